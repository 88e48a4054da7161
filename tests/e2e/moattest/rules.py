"""Virtual patches end to end: rules, tcp_rules and devices files for a tenant, a moatd that
uses them and writes a security log, and the checks that every blocked request must pass.

The integration contract (issue 4): a blocked request gets the rule's status (default 403),
Content-Type application/json and {"error":"blocked","rule":"<id>","request_id":"<16 hex>"};
the origin sees nothing; the access log line has the rule's status; the security log has one
JSON line per hit; `moatd -t` prints `FILE:LINE: column N: rule ID: message`, the source line
and a caret under column N.
"""

import json
import re
import signal

from .client import HTTPConn

REQUEST_ID = re.compile(r"[0-9a-f]{16}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

# what every security log line has, and what HTTP hits add (TCP hits have conn_id instead)
SECLOG_FIELDS = ("time", "rule", "name", "action", "mode", "outcome", "listener", "tenant",
                 "device", "remote")
SECLOG_HTTP_FIELDS = ("method", "path", "request_id")
OUTCOMES = {"blocked", "closed", "allowed", "logged", "would block", "would close",
            "would log"}


def write_atomic(path, text):
    """Writes text to path through a rename: a reloading moatd never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def devices_text(devices):
    """A devices file from {"dev-1": {"model": "cam-x", "firmware": "2.3.0", ...}}."""
    out = []
    for dev, keys in devices.items():
        out.append(f"[{dev}]")
        out += [f"{k} = {v}" for k, v in keys.items()]
        out.append("")
    return "\n".join(out)


def start_rules(moatd, rules=None, *, tcp_rules=None, devices=None, tenant="alpha", moat=None,
                tenant_keys=None, tenants=None, listeners=None, start=True, **kw):
    """A moatd whose tenant `tenant` has these rules / tcp_rules / devices (file texts; None
    leaves the key out) and whose security log is m.security_log.

    The files are m.rules_path, m.tcp_rules_path, m.devices_path: rewrite one with
    write_atomic and m.reload() to apply it."""
    m = moatd(start=False, **kw)
    m.rules_path = m.dir / f"{tenant}.rules"
    m.tcp_rules_path = m.dir / f"{tenant}.tcp.rules"
    m.devices_path = m.dir / f"{tenant}.devices"
    keys = {}
    if rules is not None:
        keys["rules"] = str(write_atomic(m.rules_path, rules))
    if tcp_rules is not None:
        keys["tcp_rules"] = str(write_atomic(m.tcp_rules_path, tcp_rules))
    if devices is not None:
        text = devices if isinstance(devices, str) else devices_text(devices)
        keys["devices"] = str(write_atomic(m.devices_path, text))
    keys.update(tenant_keys or {})
    moat_keys = {"security_log": str(m.security_log)}
    moat_keys.update(moat or {})
    ts = {tenant: keys}
    ts.update(tenants or {})
    m.configure(moat=moat_keys, tenants=ts, listeners=listeners)
    if start:
        m.start()
    return m


def reload_and_wait(m, expect_ok=True):
    """SIGHUP; waits for the outcome line (success: 'reloaded'; failure: an [error] line that
    says the reload was refused). Returns the new error-log lines."""
    start = len(m.log_lines())
    m.send_signal(signal.SIGHUP)
    if expect_ok:
        m.wait_log(r"(?i)\breloaded\b", timeout=10, start=start)
    else:
        m.wait_log(r"\[error\].*(?i:refused)", timeout=10, start=start)
    new = m.log_lines()[start:]
    if expect_ok:
        assert not [l for l in new if "[error]" in l], new
    assert m.running
    return new


# ---------------------------------------------------------------------------------------------
# responses

def curl_header(result, name):
    """The last value of header `name` in a curl result's response head(s)."""
    value = None
    for line in result.headers_text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            value = v.strip()
    return value


def assert_blocked(resp, rule, status=403):
    """resp (a curl result or a raw Response) is the contract's block answer for `rule`;
    returns the request id it carries."""
    if hasattr(resp, "headers_text"):  # curl
        got_status, ctype = resp.status, curl_header(resp, "content-type")
        body = resp.body
        where = repr(resp)
    else:
        got_status, ctype = resp.status, resp.header("content-type")
        body = resp.body.decode("latin-1")
        where = repr(resp)
    assert got_status == status, f"expected {status} from rule {rule}, got {where}"
    assert ctype is not None and ctype.split(";")[0].strip() == "application/json", \
        f"blocked answer has Content-Type {ctype!r}: {where}"
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"blocked answer is not JSON: {body!r}") from None
    assert set(doc) == {"error", "rule", "request_id"}, f"blocked body {doc}"
    assert doc["error"] == "blocked" and doc["rule"] == rule, f"blocked body {doc}"
    assert REQUEST_ID.fullmatch(doc["request_id"]), f"request_id in {doc}"
    return doc["request_id"]


def raw_get(m, target, *, cert, headers=(), host="alpha.test", timeout=5):
    """One request with exactly this target on a fresh connection (Connection: close); the
    Response, or None if moatd closed the connection without answering."""
    with HTTPConn(m, cert=cert, host=host, timeout=timeout) as c:
        c.request("GET", target, host=host, headers=list(headers) + ["Connection: close"])
        return c.response_or_close(timeout)


# ---------------------------------------------------------------------------------------------
# security log

def check_seclog_entry(e, *, rule, action, mode, outcome, tenant="alpha", device=None,
                       listener="devices", http=True):
    """One security log line has every field the contract lists, with these values."""
    missing = [f for f in SECLOG_FIELDS if f not in e]
    assert not missing, f"security log line lacks {missing}: {e}"
    assert ISO_MS.fullmatch(e["time"]) or re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", e["time"]), e
    assert (e["rule"], e["action"], e["mode"], e["outcome"]) == (rule, action, mode, outcome), e
    assert e["outcome"] in OUTCOMES, e
    assert e["listener"] == listener and e["tenant"] == tenant, e
    if device is not None:
        assert e["device"] == device, e
    assert re.fullmatch(r"(127\.\d+\.\d+\.\d+|\[::1\]):\d+", e["remote"]), e
    if http:
        missing = [f for f in SECLOG_HTTP_FIELDS if f not in e]
        assert not missing, f"security log line of an HTTP hit lacks {missing}: {e}"
        assert REQUEST_ID.fullmatch(e["request_id"]), e
    else:
        assert "conn_id" in e and REQUEST_ID.fullmatch(e["conn_id"]), e
        extra = [f for f in SECLOG_HTTP_FIELDS if f in e]
        assert not extra, f"security log line of a TCP hit has HTTP fields {extra}: {e}"
    return e


def seclog_for(m, request_id, timeout=5, n=1):
    """The security log lines of one request (by request id); waits for at least n."""
    return m.wait_security(n, timeout=timeout, where=lambda e: e.get("request_id") == request_id)


def stats_rule(stats, rule_id, tenant="alpha", kind="rules"):
    """One rule's entry in a rules-stats.json document."""
    rules = stats["tenants"][tenant][kind]
    found = [r for r in rules if r["id"] == rule_id]
    assert len(found) == 1, f"rule {rule_id} in {kind} of {tenant}: {rules}"
    return found[0]


def parse_check_output(text):
    """`moatd -t` output -> [(file, line, col, rest, source_line, caret_line)] for every
    `FILE:LINE: column N: ...` error, with the two lines that follow it."""
    lines = text.splitlines()
    out = []
    for i, l in enumerate(lines):
        mm = re.match(r"^(.+?):(\d+): column (\d+): (.*)$", l)
        if mm:
            src = lines[i + 1] if i + 1 < len(lines) else ""
            caret = lines[i + 2] if i + 2 < len(lines) else ""
            out.append((mm.group(1), int(mm.group(2)), int(mm.group(3)), mm.group(4), src,
                        caret))
    return out


def locate(text, needle, occurrence=1):
    """(line, column), both 1-based, of the n-th occurrence of needle in a file's text."""
    idx = -1
    for _ in range(occurrence):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def assert_caret(err, file_text):
    """An error from parse_check_output shows its source line and a caret under its column."""
    path, line, col, rest, src, caret = err
    want = file_text.splitlines()[line - 1]
    assert src.endswith(want) and not src[:len(src) - len(want)].strip(), \
        f"source line {src!r}, the file has {want!r}"
    assert caret.strip() == "^", f"caret line {caret!r}"
    # the caret sits under column `col` of the source line, whatever the common indent
    indent = len(src) - len(want)
    assert caret.index("^") - indent == col - 1, \
        f"caret under column {caret.index('^') - indent + 1}, not {col}:\n{src}\n{caret}"
