"""Virtual patches over a gateway's life: a new rules file applied by SIGHUP to connections
already open (none dropped), broken rules files refused whole with file, line, column and a
caret (on SIGHUP, at start and by `moatd -t`) while the running rules keep working, and the
hit counters of SIGUSR2's rules-stats.json, which survive a reload for rules that keep their id.
"""

import re
import signal
import threading
import time

import pytest

from moattest.client import HTTPConn, curl
from moattest.rules import (assert_blocked, assert_caret, check_seclog_entry, locate,
                            parse_check_output, reload_and_wait, start_rules, stats_rule,
                            write_atomic)
from moattest.util import wait_until

V1 = r"""
[rule cve-2026-0001]
name = Command injection in the cgi-bin diagnostics
reference = CVE-2026-0001
expr = starts_with(http.request.uri.path, "/cgi-bin/")
       and any(http.request.uri.args["host"] matches r"[;|`]|\$\(")
"""

BACKDOOR = """
[rule cve-2026-0042]
name = Vendor backdoor account
reference = CVE-2026-0042
expr = http.request.uri.path == "/admin/backdoor"
"""

ATTACK = "/cgi-bin/diag?host=1.2.3.4;id"


# ---------------------------------------------------------------------------------------------
# SIGHUP on open connections

@pytest.mark.deadline(60)
def test_sighup_applies_to_open_keepalive_connections(moatd, origin, cams):
    m = start_rules(moatd, V1)
    conns = [HTTPConn(m, cert=cams.dev1, timeout=5) for _ in range(3)]
    stop, errors, done = threading.Event(), [], [0]

    def background():
        """Requests on one more keep-alive connection throughout the reload."""
        try:
            with HTTPConn(m, cert=cams.dev1, timeout=5) as c:
                i = 0
                while not stop.is_set():
                    c.request("GET", f"/bg/{i}")
                    r = c.response()
                    if r.status != 200:
                        errors.append(f"/bg/{i}: {r!r}")
                    i += 1
                    done[0] = i
                    time.sleep(0.01)
        except Exception as e:  # reported below
            errors.append(f"background connection failed: {e!r}")

    t = threading.Thread(target=background, daemon=True)
    t.start()
    try:
        for c in conns:
            c.request("GET", "/admin/backdoor")
            assert c.response().status == 200
        write_atomic(m.rules_path, V1 + BACKDOOR)
        reload_and_wait(m)
        before = done[0]
        for i, c in enumerate(conns):
            c.request("GET", "/admin/backdoor")
            r = c.response()
            assert_blocked(r, "cve-2026-0042")
            c.request("GET", f"/still-open/{i}")
            assert c.response().status == 200, f"connection {i} after its block"
        wait_until(lambda: done[0] > before + 5, 5, what="background requests after reload")
    finally:
        stop.set()
        t.join(timeout=10)
        for c in conns:
            c.close()
    assert not errors, errors
    uris = [e["uri"] for e in origin.entries()]
    assert uris.count("/admin/backdoor") == 3, uris
    assert sorted(u for u in uris if u.startswith("/still-open/")) == \
        [f"/still-open/{i}" for i in range(3)]


def test_sighup_removes_a_rule(moatd, origin, cams):
    m = start_rules(moatd, V1 + BACKDOOR)
    with HTTPConn(m, cert=cams.dev1) as c:
        c.request("GET", "/admin/backdoor")
        assert_blocked(c.response(), "cve-2026-0042")
        write_atomic(m.rules_path, V1)
        reload_and_wait(m)
        c.request("GET", "/admin/backdoor")
        assert c.response().status == 200
        c.request("GET", ATTACK)
        assert_blocked(c.response(), "cve-2026-0001")


# ---------------------------------------------------------------------------------------------
# broken rules files

GOOD_NEW = """
[rule block-new]
name = Blocks /new if this file is ever applied
expr = http.request.uri.path == "/new"
"""

# (id, the broken rule's text, the text the error points at, what the message says)
BROKEN = [
    ("type-error", 'expr = http.request.uri.path == 404\n', "404", "not a number"),
    ("unknown-field", 'expr = http.request.uri.pth == "/x"\n', "http.request.uri.pth",
     "unknown field"),
    ("bad-regex", 'expr = http.request.uri.path matches r"^/(cgi-bin|admin"\n', None, ""),
    ("unknown-key", 'acton = block\nexpr = true\n', "acton", "unknown key"),
    ("bad-version", 'expr = device.firmware < "2.x"\n', '"2.x"', "version"),
]


def broken_file(body):
    return V1 + GOOD_NEW + "\n[rule broken]\nname = Broken on purpose\n" + body


def expected_position(text, needle):
    """(line, first column, last column) the error may point at."""
    if needle is not None:
        line, col = locate(text, needle)
        return line, col, col
    # a regex error points into the pattern: anywhere from r" to its closing quote
    line, col = locate(text, 'r"^/(cgi-bin')
    return line, col, col + len('r"^/(cgi-bin|admin"') - 1


@pytest.mark.parametrize("name,body,needle,msg", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_rules_refused_on_sighup(moatd, origin, cams, name, body, needle, msg):
    m = start_rules(moatd, V1)
    text = broken_file(body)
    line, col_lo, col_hi = expected_position(text, needle)
    write_atomic(m.rules_path, text)
    new = reload_and_wait(m, expect_ok=False)
    errs = [l for l in new if "[error]" in l and f"{m.rules_path}:{line}:" in l]
    assert errs, f"no [error] line naming {m.rules_path}:{line}: in {new}"
    cols = [int(c) for l in errs for c in re.findall(r"column (\d+)", l)]
    assert any(col_lo <= c <= col_hi for c in cols), \
        f"error lines do not point at column {col_lo}..{col_hi}: {errs}"
    assert any(msg in l for l in errs), f"error lines lack {msg!r}: {errs}"
    # the running rules stay, none of the refused file applies
    assert_blocked(curl(m, ATTACK, cert=cams.dev1), "cve-2026-0001")
    assert curl(m, "/new", cert=cams.dev1).status == 200
    assert [e["uri"] for e in origin.entries()] == ["/new"]
    # a later good file is taken
    write_atomic(m.rules_path, V1 + GOOD_NEW)
    reload_and_wait(m)
    assert_blocked(curl(m, "/new", cert=cams.dev1), "block-new")


@pytest.mark.parametrize("name,body,needle,msg", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_rules_check_prints_file_line_column_and_caret(moatd, name, body, needle, msg):
    m = start_rules(moatd, broken_file(body), start=False)
    text = m.rules_path.read_text()
    line, col_lo, col_hi = expected_position(text, needle)
    p = m.check_config()
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    errs = [e for e in parse_check_output(out) if e[0] == str(m.rules_path) and e[1] == line]
    assert errs, f"no '{m.rules_path}:{line}: column N: ...' line in:\n{out}"
    err = errs[0]
    assert col_lo <= err[2] <= col_hi, f"column {err[2]}, expected {col_lo}..{col_hi}:\n{out}"
    assert err[3].startswith("rule broken: "), f"the message does not name the rule: {err[3]}"
    assert msg in err[3], f"{err[3]!r} lacks {msg!r}"
    assert_caret(err, text)


def test_broken_rules_file_stops_start(moatd, cams):
    """At start, a rules file with an error is fatal: exit status 1, the error on stderr."""
    m = start_rules(moatd, broken_file(BROKEN[0][1]), start=False)
    with pytest.raises(AssertionError, match="exited with 1 at start"):
        m.start(timeout=10)
    assert f"{m.rules_path}:" in m.stderr_text() + "\n".join(m.log_lines())


def test_check_reports_every_error(moatd):
    text = """
[rule one]
name = First
expr = http.request.method == 1

[rule two]
name = Second
expr = http.reqest.method == "GET"

[rule three]
name = Third
action = explode
expr = true
"""
    m = start_rules(moatd, text, start=False)
    p = m.check_config()
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    errs = parse_check_output(out)
    want = {("one",) + locate(text, "1\n"), ("two",) + locate(text, "http.reqest"),
            ("three",) + locate(text, "explode")}
    got = {(e[3].split(":")[0].replace("rule ", ""), e[1], e[2]) for e in errs}
    assert want <= got, f"expected {sorted(want)}, got {sorted(got)}:\n{out}"
    for e in errs:
        assert_caret(e, text)


def test_check_accepts_good_rules(moatd, cams):
    m = start_rules(moatd, V1 + BACKDOOR, devices={"dev-1": {"model": "cam-x"}}, start=False)
    p = m.check_config()
    assert p.returncode == 0, p.stdout + p.stderr


def test_missing_rules_file(moatd):
    m = start_rules(moatd, V1, start=False)
    m.configure(moat={"security_log": str(m.security_log)},
                tenants={"alpha": {"rules": str(m.dir / "nonexistent.rules")}})
    p = m.check_config()
    assert p.returncode == 1, p
    assert "nonexistent.rules" in p.stdout + p.stderr, p


# ---------------------------------------------------------------------------------------------
# counters

STATS_V1 = """
[rule p-enforce]
name = Enforced patch
expr = http.request.uri.path == "/p1"

[rule p-dry]
name = Patch being watched
mode = dry-run
expr = http.request.uri.path == "/p2"

[rule p-log]
name = Log the p pages
action = log
expr = starts_with(http.request.uri.path, "/p")

[rule p-disabled]
name = Switched off
enabled = false
expr = http.request.uri.path == "/p3"
"""

# p-dry is promoted to enforce, p-disabled removed, p-new added; p-enforce changes its name
STATS_V2 = """
[rule p-enforce]
name = Enforced patch, renamed
expr = http.request.uri.path == "/p1"

[rule p-dry]
name = Patch now enforced
expr = http.request.uri.path == "/p2"

[rule p-log]
name = Log the p pages
action = log
expr = starts_with(http.request.uri.path, "/p")

[rule p-new]
name = New
expr = http.request.uri.path == "/p4"
"""


def counts(stats, kind="rules"):
    return {r["id"]: (r["hits_enforce"], r["hits_dry_run"])
            for r in stats["tenants"]["alpha"][kind]}


@pytest.mark.deadline(60)
def test_security_log_and_stats(moatd, origin, cams):
    m = start_rules(moatd, STATS_V1)
    plan = ["/p1"] * 3 + ["/p2"] * 2 + ["/p3"] * 4 + ["/q"]
    with HTTPConn(m, cert=cams.dev1) as c:
        for path in plan:
            c.request("GET", path)
            r = c.response()
            if path == "/p1":
                assert_blocked(r, "p-enforce")
            else:
                assert r.status == 200, (path, r)
        local = c.sock.getsockname()

    # the security log: one line per hit, in rule order within a request
    hits = m.wait_security(3 + 2 * 2 + 4)
    time.sleep(0.2)
    hits = m.security_entries()
    assert len(hits) == 11, hits
    expected = ([("p-enforce", "block", "enforce", "blocked")] * 3
                + [("p-dry", "block", "dry-run", "would block"),
                   ("p-log", "log", "enforce", "logged")] * 2
                + [("p-log", "log", "enforce", "logged")] * 4)
    assert [(h["rule"], h["action"], h["mode"], h["outcome"]) for h in hits] == expected
    access = {a["request_id"]: a for a in m.wait_access(len(plan))}
    for h in hits:
        check_seclog_entry(h, rule=h["rule"], action=h["action"], mode=h["mode"],
                           outcome=h["outcome"], device="dev-1")
        assert h["remote"] == f"127.0.0.1:{local[1]}", h
        assert h["request_id"] in access, h
        a = access[h["request_id"]]
        assert (h["method"], h["path"]) == (a["method"], a["path"]), (h, a)
        assert "reference" not in h, h  # only when the rule has one
    assert access[hits[0]["request_id"]]["status"] == 403

    # SIGUSR2: the counters
    s1 = m.rules_stats()
    assert isinstance(s1["generation"], int) and isinstance(s1["time"], str), s1
    assert counts(s1) == {"p-enforce": (3, 0), "p-dry": (0, 2), "p-log": (6, 0),
                          "p-disabled": (0, 0)}, s1
    r = stats_rule(s1, "p-dry")
    assert (r["name"], r["action"], r["mode"], r["enabled"]) == \
        ("Patch being watched", "block", "dry-run", True), r
    assert stats_rule(s1, "p-disabled")["enabled"] is False
    assert s1["tenants"]["alpha"]["tcp_rules"] == []
    assert counts(s1) == counts(m.rules_stats()), "SIGUSR2 itself changed the counters"

    # a reload: rules that keep their id keep their counts
    write_atomic(m.rules_path, STATS_V2)
    reload_and_wait(m)
    s2 = m.rules_stats()
    assert s2["generation"] > s1["generation"], (s1["generation"], s2["generation"])
    assert counts(s2) == {"p-enforce": (3, 0), "p-dry": (0, 2), "p-log": (6, 0),
                          "p-new": (0, 0)}, s2
    assert stats_rule(s2, "p-dry")["mode"] == "enforce"
    assert stats_rule(s2, "p-enforce")["name"] == "Enforced patch, renamed"
    for path, rule in (("/p1", "p-enforce"), ("/p2", "p-dry"), ("/p4", "p-new")):
        assert_blocked(curl(m, path, cert=cams.dev1), rule)
    # /p4 passes p-log (logged) before p-new blocks it
    assert counts(m.rules_stats()) == {"p-enforce": (4, 0), "p-dry": (1, 2), "p-log": (7, 0),
                                       "p-new": (1, 0)}
    # a refused reload changes nothing either
    write_atomic(m.rules_path, STATS_V2 + "\n[rule bad]\nname = x\nexpr = nope\n")
    reload_and_wait(m, expect_ok=False)
    s3 = m.rules_stats()
    assert s3["generation"] == s2["generation"]
    assert counts(s3) == {"p-enforce": (4, 0), "p-dry": (1, 2), "p-log": (7, 0),
                          "p-new": (1, 0)}


# ---------------------------------------------------------------------------------------------
# devices file and security log over reloads

AUTH = """
[rule cve-2026-0003]
name = X-Debug-Auth bypass on cam-x before 2.4.0
expr = device.model == "cam-x" and device.firmware < "2.4.0"
       and any(http.request.headers["x-debug-auth"] == "1")
"""


def test_sighup_rereads_the_devices_file(moatd, origin, cams):
    """dev-1 is upgraded to 2.4.0: after the devices file says so and a SIGHUP, the patch no
    longer applies to it, on its already-open connection too."""
    m = start_rules(moatd, AUTH, devices={"dev-1": {"model": "cam-x", "firmware": "2.3.9"}})
    with HTTPConn(m, cert=cams.dev1) as c:
        c.request("GET", "/api/config", headers=["X-Debug-Auth: 1"])
        assert_blocked(c.response(), "cve-2026-0003")
        write_atomic(m.devices_path, "[dev-1]\nmodel = cam-x\nfirmware = 2.4.0\n")
        reload_and_wait(m)
        c.request("GET", "/api/config", headers=["X-Debug-Auth: 1"])
        assert c.response().status == 200
    assert [e["uri"] for e in origin.entries()] == ["/api/config"]


def test_security_log_reopened_on_sigusr1(moatd, cams):
    m = start_rules(moatd, V1)
    assert_blocked(curl(m, ATTACK, cert=cams.dev1), "cve-2026-0001")
    m.wait_security(1)
    rotated = m.security_log.with_name("security.log.1")
    m.security_log.rename(rotated)
    start = len(m.log_lines())
    m.send_signal(signal.SIGUSR1)
    m.wait_log(r"(?i)reopen", start=start)
    assert_blocked(curl(m, ATTACK + "&n=2", cert=cams.dev1), "cve-2026-0001")
    wait_until(m.security_log.exists, 5, what="a new security log after SIGUSR1")
    (e,) = m.wait_security(1)
    assert e["rule"] == "cve-2026-0001"
    assert len(rotated.read_text().splitlines()) == 1


def test_counters_without_a_security_log(moatd, cams):
    m = start_rules(moatd, V1, moat={"security_log": None})
    for _ in range(2):
        assert_blocked(curl(m, ATTACK, cert=cams.dev1), "cve-2026-0001")
    assert counts(m.rules_stats()) == {"cve-2026-0001": (2, 0)}
    assert not m.security_log.exists()


def test_check_caret_lines_up_under_a_tab_indented_line(moatd):
    """Continuation lines may be indented with tabs (docs/rules.md): the caret must still sit
    under the offending column as a terminal shows it."""
    text = ('[rule tabbed]\nname = Tabbed\nexpr = tenant == "alpha"\n'
            '\tand http.request.uri.pth == "/x"\n')
    m = start_rules(moatd, text, start=False)
    p = m.check_config()
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    (err,) = [e for e in parse_check_output(out) if e[0] == str(m.rules_path)]
    line, col = locate(text, "http.request.uri.pth")
    assert (err[1], err[2]) == (line, col), out
    src, caret = err[4].expandtabs(8), err[5].expandtabs(8)
    at = caret.index("^")
    assert src[at:].startswith("http.request.uri.pth"), \
        f"the caret points at {src[at:at + 12]!r}, not the unknown field:\n{src}\n{caret}"
