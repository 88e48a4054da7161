"""Virtual patches on an HTTP listener, end to end: three IoT patches in one rules file — a
command injection through a /cgi-bin/ query argument, a path traversal through encoded dot
segments, an auth-bypass header on one camera model below one firmware version — against curl
and raw-socket devices and the nginx origin. Each attack gets the contract's 403 JSON answer
and never reaches the origin; normal traffic, near misses included, passes untouched.

Also: the security log line of a block, the keep-alive connection after a block (and the
closed one after a block with a body left unread), HEAD and HTTP/1.0, dry-run, the log / allow
/ close actions, a custom status and body, tenants, IPv6 sources, every connection and device
field as a rule sees it, and the three patches of docs/rules.md exactly as written there.
"""

import pathlib
import time

import pytest

from moattest.client import HTTPConn, curl
from moattest.rules import (assert_blocked, check_seclog_entry, raw_get, reload_and_wait,
                            seclog_for, start_rules, write_atomic)
from moattest.util import wait_until

# device id -> facts the rules see as device.model / device.firmware / device.tags
DEVICES = {
    "dev-1": {"model": "cam-x", "firmware": "2.3.0", "tags": "outdoor, batch-7"},
    "dev-2": {"model": "cam-x", "firmware": "2.10.0"},
    "dev-3": {"model": "doorbell-y", "firmware": "1.0.0"},
}

# The path traversal patch reads two fields: the raw path decoded once catches "..%2f" and
# "%2e%2e/" (which the normalised path has already resolved away), the normalised path (decoded
# once) decoded again catches the double-encoded "%252e%252e%252f".
PATCHES = r"""# Virtual patches for alpha's cameras

[rule cve-2026-0001]
name = Command injection in the cgi-bin diagnostics
reference = CVE-2026-0001
description = diag and ping.cgi pass the host argument to /bin/sh -c
action = block
expr = starts_with(http.request.uri.path, "/cgi-bin/")
       and any(http.request.uri.args["host"] matches r"[;|`\n]|\$\(")

[rule cve-2026-0002]
name = Path traversal in the file server
reference = CVE-2026-0002
expr = url_decode(http.request.uri.path.raw) contains "../"
       or url_decode(http.request.uri.path) contains "../"

[rule cve-2026-0003]
name = X-Debug-Auth bypass on cam-x before 2.4.0
reference = CVE-2026-0003
expr = device.model == "cam-x" and device.firmware < "2.4.0"
       and any(http.request.headers["x-debug-auth"] == "1")
"""


def origin_uris(origin, settle=0.4):
    time.sleep(settle)
    return [e["uri"] for e in origin.entries()]


def run_cases(m, cert, attacks, clean, rule, raw_attacks=(), curl_extra=()):
    """Sends each attack (curl, then raw client) and each clean request; returns a list of
    problems (empty if every attack got rule's block and every clean request a 200) and the
    request ids of the blocks."""
    problems, ids = [], {}
    for path in attacks:
        r = curl(m, path, cert=cert, extra=curl_extra)
        try:
            ids[path] = assert_blocked(r, rule)
        except AssertionError as e:
            problems.append(f"curl {path}: {e}")
    for path in raw_attacks:
        r = raw_get(m, path, cert=cert)
        try:
            assert r is not None, "connection closed without an answer"
            ids[path] = assert_blocked(r, rule)
        except AssertionError as e:
            problems.append(f"raw {path}: {e}")
    for path in clean:
        r = curl(m, path, cert=cert, extra=curl_extra)
        if r.status != 200:
            problems.append(f"clean {path}: expected 200, got {r!r}")
    return problems, ids


def check_origin(origin, attacks, clean):
    seen = origin_uris(origin)
    leaked = [u for u in seen if u in set(attacks)]
    missing = [u for u in clean if u not in seen]
    assert not leaked, f"attacks reached the origin: {leaked}"
    assert not missing, f"clean requests did not reach the origin: {missing} (saw {seen})"


def check_access_403(m, ids, status=403):
    def have_all():
        by_id = {a.get("request_id"): a for a in m.access_entries()}
        return all(i in by_id for i in ids.values()) and by_id
    try:
        by_id = wait_until(have_all, 5, what="access log lines of the blocked requests")
    except TimeoutError:
        raise AssertionError(f"blocked requests missing from the access log: "
                             f"{m.access_entries()[-10:]}") from None
    wrong = {p: by_id[i].get("status") for p, i in ids.items() if by_id[i].get("status") != status}
    assert not wrong, f"access log status of blocked requests is not {status}: {wrong}"


# ---------------------------------------------------------------------------------------------
# the three patches

CMD_ATTACKS = [
    "/cgi-bin/diag?host=1.2.3.4;cat%20/etc/passwd",
    "/cgi-bin/diag?host=1.2.3.4%3Bcat%20/etc/passwd",
    "/cgi-bin/diag?host=1.2.3.4%7Cid",
    "/cgi-bin/diag?host=%60reboot%60",
    "/cgi-bin/ping.cgi?count=1&host=%24%28reboot%29",
    "/cgi-bin/diag?host=1.2.3.4&host=1.2.3.4;id",  # the second of two values
    "/cgi-bin/diag?host=1.2.3.4%0Aid",
    "/cgi-bin//diag?host=1.2.3.4;id",
]
CMD_RAW_ATTACKS = [
    "/cgi-bin/diag?host=1.2.3.4|id",
    "/cgi-bin/diag?host=`id`",
    "/cgi-bin/diag?host=$(reboot)",
    "/cgi-bin/diag?host=1.2.3.4;cat+/etc/passwd",
    "/%63gi-bin/diag?host=;id",  # the normalised path decodes it
]
CMD_CLEAN = [
    "/cgi-bin/status?host=example.com",
    "/cgi-bin/diag?host=10.0.0.1",
    "/cgi-bin/diag?host=cam.example.com&count=3",
    "/cgi-bin/diag?note=a;b",  # not the host argument
    "/api/search?host=a;b|c",  # not under /cgi-bin/
    "/cgi-bin/diag?host=a%2Bb",
]


def test_command_injection(moatd, origin, cams):
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    problems, ids = run_cases(m, cams.dev1, CMD_ATTACKS, CMD_CLEAN, "cve-2026-0001",
                              raw_attacks=CMD_RAW_ATTACKS)
    assert not problems, "\n".join(problems)
    check_origin(origin, CMD_ATTACKS + CMD_RAW_ATTACKS, CMD_CLEAN)
    check_access_403(m, ids)


TRAVERSAL_ATTACKS = [
    "/files/..%2f..%2fetc/passwd",
    "/files/..%2F..%2Fetc%2Fpasswd",
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/%2E%2E%2Fetc%2Fpasswd",
    "/files/%252e%252e%252fetc%252fpasswd",
    "/files/..%252f..%252fetc/passwd",
    "/files/%252E%252E%252Fetc/passwd",
    "/static/%2e%2e%2f%2e%2e%2fetc/shadow?download=1",
]
TRAVERSAL_RAW_ATTACKS = [
    "/files/../../etc/passwd",
    "/files/sub/..%2f..%2f..%2fetc/passwd",
]
TRAVERSAL_CLEAN = [
    "/files/a..b",
    "/files/report..2026.txt",
    "/files/..hidden/x",
    "/files/dir/./x",
    "/files/v1.2/..config",
    "/static/small.txt",
    "/files/100%25/ok",
]


def test_path_traversal(moatd, origin, cams):
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    problems, ids = run_cases(m, cams.dev1, TRAVERSAL_ATTACKS, TRAVERSAL_CLEAN, "cve-2026-0002",
                              raw_attacks=TRAVERSAL_RAW_ATTACKS, curl_extra=("--path-as-is",))
    assert not problems, "\n".join(problems)
    check_origin(origin, TRAVERSAL_ATTACKS + TRAVERSAL_RAW_ATTACKS, TRAVERSAL_CLEAN)
    check_access_403(m, ids)


def test_auth_bypass_header_by_model_and_firmware(moatd, origin, cams):
    """dev-1 is a cam-x on 2.3.0: blocked. dev-2 is a cam-x on 2.10.0, which is newer than
    2.4.0 as a version (not as a string): allowed. dev-3 is another model: allowed."""
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    cases = [
        # (case, cert, headers, blocked)
        ("dev1-header", cams.dev1, ["X-Debug-Auth: 1"], True),
        ("dev1-lowercase-name", cams.dev1, ["x-debug-auth: 1"], True),
        ("dev1-no-header", cams.dev1, [], False),
        ("dev1-header-0", cams.dev1, ["X-Debug-Auth: 0"], False),
        ("dev2-header", cams.dev2, ["X-Debug-Auth: 1"], False),
        ("dev3-header", cams.dev3, ["X-Debug-Auth: 1"], False),
    ]
    problems, blocked_ids = [], {}
    for case, cert, headers, blocked in cases:
        r = curl(m, f"/api/config?case={case}", cert=cert, headers=headers)
        if blocked:
            try:
                blocked_ids[case] = assert_blocked(r, "cve-2026-0003")
            except AssertionError as e:
                problems.append(f"{case}: {e}")
        elif r.status != 200:
            problems.append(f"{case}: expected 200, got {r!r}")
    # the header twice, the second one the bad one: any() of the values
    r = raw_get(m, "/api/config?case=dev1-two-headers", cert=cams.dev1,
                headers=["X-Debug-Auth: 0", "X-Debug-Auth: 1"])
    try:
        assert r is not None, "closed without an answer"
        blocked_ids["dev1-two-headers"] = assert_blocked(r, "cve-2026-0003")
    except AssertionError as e:
        problems.append(f"dev1-two-headers: {e}")
    assert not problems, "\n".join(problems)

    time.sleep(0.4)
    seen = {e["uri"].split("case=")[1]: e for e in origin.entries() if "case=" in e["uri"]}
    allowed = [c for c, _, _, b in cases if not b]
    assert sorted(seen) == sorted(allowed), f"origin saw {sorted(seen)}, expected {allowed}"
    assert seen["dev2-header"]["device"] == "dev-2" and seen["dev3-header"]["device"] == "dev-3"
    for case, rid in blocked_ids.items():
        (e,) = seclog_for(m, rid)
        check_seclog_entry(e, rule="cve-2026-0003", action="block", mode="enforce",
                           outcome="blocked", device="dev-1")


def test_block_answer_security_log_and_keep_alive(moatd, origin, cams):
    """A blocked GET leaves its keep-alive connection open for the next request; the security
    log line names the rule, the device, the request; the access log has the 403."""
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    attack = "/cgi-bin/diag?host=1.2.3.4;cat%20/etc/passwd"
    with HTTPConn(m, cert=cams.dev1) as c:
        c.request("GET", "/before")
        assert c.response().status == 200
        c.request("GET", attack)
        r = c.response()
        rid = assert_blocked(r, "cve-2026-0001")
        assert (r.header("connection") or "").lower() != "close", r
        c.request("GET", "/after")
        r2 = c.response()
        assert r2.status == 200, r2
        local = c.sock.getsockname()
    assert origin_uris(origin) == ["/before", "/after"]
    (e,) = seclog_for(m, rid)
    check_seclog_entry(e, rule="cve-2026-0001", action="block", mode="enforce",
                       outcome="blocked", device="dev-1")
    assert e["name"] == "Command injection in the cgi-bin diagnostics", e
    assert e["reference"] == "CVE-2026-0001", e
    assert e["remote"] == f"127.0.0.1:{local[1]}", e
    assert (e["method"], e["path"]) == ("GET", "/cgi-bin/diag"), e
    a = [x for x in m.wait_access(3) if x.get("request_id") == rid]
    assert len(a) == 1 and a[0]["status"] == 403, a
    # only the attack was a hit
    assert [x["request_id"] for x in m.security_entries()] == [rid]


def test_blocked_request_with_unread_body_closes(moatd, origin, cams):
    """The contract: with body bytes left unread, the connection closes after the answer,
    which is the same block answer as without a body."""
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    with HTTPConn(m, cert=cams.dev1) as c:
        c.request("POST", "/cgi-bin/diag?host=;reboot", body=b"x" * 1000)
        r = c.response()
        assert_blocked(r, "cve-2026-0001")
        assert c.closed_within(3), "moatd kept a connection with an unread body open"
    origin.assert_quiet()


def test_blocked_upload_gets_its_answer(moatd, origin, cams, tmp_path):
    """A device uploading to a blocked URL receives the 403 (the connection is closed after
    the answer, not reset under it while the device is still sending)."""
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    problems = []
    for i, size in enumerate([50000] * 4 + [20000, 100000] * 2):
        body = tmp_path / f"upload-{i}.bin"
        body.write_bytes(b"x" * size)
        r = curl(m, f"/cgi-bin/diag?host=;reboot&try={i}", cert=cams.dev1, data_file=body,
                 timeout=10)
        try:
            assert_blocked(r, "cve-2026-0001")
        except AssertionError as e:
            problems.append(f"try {i} ({size} bytes): {e}")
    assert not problems, "\n".join(problems)
    origin.assert_quiet()


# ---------------------------------------------------------------------------------------------
# dry-run

def test_dry_run_lets_the_attack_through_and_logs(moatd, origin, cams):
    dry = PATCHES.replace("action = block\n", "action = block\nmode = dry-run\n", 1)
    assert dry != PATCHES
    m = start_rules(moatd, dry, devices=DEVICES)
    attack = "/cgi-bin/diag?host=1.2.3.4;cat%20/etc/passwd"
    r = curl(m, attack, cert=cams.dev1)
    assert r.status == 200, f"a dry-run rule blocked: {r!r}"
    e = origin.one()
    assert e["uri"] == attack
    (s,) = m.wait_security(1)
    check_seclog_entry(s, rule="cve-2026-0001", action="block", mode="dry-run",
                       outcome="would block", device="dev-1")
    assert s["request_id"] == e["request_id"], (s, e)
    # the other patches of the same file still enforce
    r = curl(m, "/files/..%2f..%2fetc/passwd", cert=cams.dev1)
    assert_blocked(r, "cve-2026-0002")
    time.sleep(0.3)
    assert [x["uri"] for x in origin.entries()] == [attack]


def test_dry_run_rule_never_decides(moatd, origin, cams):
    """A matching dry-run rule before an enforcing one: both recorded, in order; the
    enforcing one decides."""
    rules = """
[rule watch-cgi]
name = Watch the cgi-bin
mode = dry-run
expr = starts_with(http.request.uri.path, "/cgi-bin/")

[rule close-cgi]
name = Close the cgi-bin
expr = starts_with(http.request.uri.path, "/cgi-bin/")
"""
    m = start_rules(moatd, rules)
    rid = assert_blocked(curl(m, "/cgi-bin/x", cert=cams.dev1), "close-cgi")
    hits = seclog_for(m, rid, n=2)
    assert [(h["rule"], h["outcome"]) for h in hits] == [("watch-cgi", "would block"),
                                                        ("close-cgi", "blocked")], hits
    origin.assert_quiet()


# ---------------------------------------------------------------------------------------------
# actions

ACTIONS = """
[rule log-scanner]
name = Log scanners
action = log
expr = lower(http.user_agent) contains "zgrab"

[rule allow-health]
name = Health checks skip the remaining rules
action = allow
expr = http.request.uri.path == "/health"

[rule drop-shell]
name = Drop web shell probes without an answer
action = close
expr = starts_with(http.request.uri.path, "/shell")

[rule legal-export]
name = Export unavailable here
status = 451
expr = starts_with(http.request.uri.path, "/export/")

[rule block-scanner]
name = Block scanners
expr = lower(http.user_agent) contains "zgrab"
"""


def test_log_action_forwards_and_records(moatd, origin, cams):
    m = start_rules(moatd, ACTIONS)
    r = curl(m, "/page", cert=cams.dev1, headers=["User-Agent: ZGrab/0.x"])
    rid = assert_blocked(r, "block-scanner")
    hits = seclog_for(m, rid, n=2)
    assert [(h["rule"], h["action"], h["outcome"]) for h in hits] == [
        ("log-scanner", "log", "logged"), ("block-scanner", "block", "blocked")], hits
    # a log rule alone: forwarded
    ok = """
[rule log-only]
name = Log scanners
action = log
expr = lower(http.user_agent) contains "zgrab"
"""
    write_atomic(m.rules_path, ok)
    reload_and_wait(m)
    r = curl(m, "/logged", cert=cams.dev1, headers=["User-Agent: ZGrab/0.x"])
    assert r.status == 200, r
    e = origin.one()
    assert e["uri"] == "/logged"
    (h,) = seclog_for(m, e["request_id"])
    check_seclog_entry(h, rule="log-only", action="log", mode="enforce", outcome="logged")


def test_allow_action_skips_the_remaining_rules(moatd, origin, cams):
    m = start_rules(moatd, ACTIONS)
    r = curl(m, "/health", cert=cams.dev1, headers=["User-Agent: zgrab"])
    assert r.status == 200, f"allow did not skip the block rule after it: {r!r}"
    e = origin.one()
    hits = seclog_for(m, e["request_id"], n=2)
    time.sleep(0.2)
    hits = [h for h in m.security_entries() if h["request_id"] == e["request_id"]]
    assert [(h["rule"], h["outcome"]) for h in hits] == [("log-scanner", "logged"),
                                                        ("allow-health", "allowed")], hits
    # without the allow, the same scanner is blocked
    assert_blocked(curl(m, "/healthz", cert=cams.dev1, headers=["User-Agent: zgrab"]),
                   "block-scanner")
    # a request no rule matches: no security log line
    n = len(m.security_entries())
    assert curl(m, "/page", cert=cams.dev1).status == 200
    time.sleep(0.2)
    assert len(m.security_entries()) == n


def test_close_action_drops_the_connection(moatd, origin, cams):
    m = start_rules(moatd, ACTIONS)
    with HTTPConn(m, cert=cams.dev1) as c:
        c.request("GET", "/shell?cmd=id")
        assert c.closed_within(3), "the connection stayed open after a close rule"
        assert bytes(c.buf) == b"", f"moatd answered a request a close rule matched: {c.buf!r}"
    origin.assert_quiet()
    (h,) = m.wait_security(1)
    check_seclog_entry(h, rule="drop-shell", action="close", mode="enforce", outcome="closed",
                       device="dev-1")
    assert h["path"] == "/shell", h
    # curl sees an empty reply
    r = curl(m, "/shell", cert=cams.dev1)
    assert r.status == 0 and r.rc != 0, r
    # and the gateway goes on serving
    assert curl(m, "/fine", cert=cams.dev1).status == 200


def test_custom_status(moatd, origin, cams):
    m = start_rules(moatd, ACTIONS)
    r = curl(m, "/export/all.csv", cert=cams.dev1)
    rid = assert_blocked(r, "legal-export", status=451)
    origin.assert_quiet()
    a = [x for x in m.wait_access(1) if x.get("request_id") == rid]
    assert len(a) == 1 and a[0]["status"] == 451, m.access_entries()
    (h,) = seclog_for(m, rid)
    check_seclog_entry(h, rule="legal-export", action="block", mode="enforce", outcome="blocked")


@pytest.mark.parametrize("action", ["log", "allow", "close"])
def test_dry_run_of_other_actions(moatd, origin, cams, action):
    """A dry-run log/allow/close rule is recorded and changes nothing."""
    rules = f"""
[rule watched]
name = Watched
action = {action}
mode = dry-run
expr = http.request.uri.path == "/watched"

[rule after]
name = Runs after it
action = log
expr = http.request.uri.path == "/watched"
"""
    m = start_rules(moatd, rules)
    r = curl(m, "/watched", cert=cams.dev1)
    assert r.status == 200, r
    e = origin.one()
    hits = seclog_for(m, e["request_id"], n=2)
    want = {"log": "would log", "allow": "would log", "close": "would close"}[action]
    assert [(h["rule"], h["mode"]) for h in hits] == [("watched", "dry-run"),
                                                     ("after", "enforce")], hits
    assert hits[0]["outcome"].startswith("would "), hits[0]
    if action != "allow":
        assert hits[0]["outcome"] == want, hits[0]


def test_custom_body(moatd, origin, cams):
    """`body` replaces the default JSON of a block; its continuation lines join with
    newlines (docs/rules.md)."""
    rules = """
[rule maintenance]
name = Firmware endpoint closed during the incident
status = 503
body = {"error":"maintenance",
  "retry_after":3600}
expr = starts_with(http.request.uri.path, "/fw/")
"""
    m = start_rules(moatd, rules)
    r = curl(m, "/fw/latest", cert=cams.dev1)
    assert r.status == 503, r
    assert r.body.rstrip("\n") == '{"error":"maintenance",\n"retry_after":3600}', r
    origin.assert_quiet()
    (h,) = m.wait_security(1)
    assert (h["rule"], h["outcome"]) == ("maintenance", "blocked"), h


def test_ip_src_rule_over_ipv6(moatd, origin, cams):
    rules = """
[rule v6-lab]
name = The IPv6 lab network may not reach /admin
expr = starts_with(http.request.uri.path, "/admin") and ip.src in {::1 2001:db8::/32}

[rule v4-only]
name = Never matches an IPv6 peer
expr = ip.src in {0.0.0.0/0}
"""
    m = start_rules(moatd, rules, bind_host="::1")
    rid = assert_blocked(curl(m, "/admin/users", cert=cams.dev1), "v6-lab")
    assert curl(m, "/public", cert=cams.dev1).status == 200
    assert origin_uris(origin) == ["/public"]
    (h,) = seclog_for(m, rid)
    check_seclog_entry(h, rule="v6-lab", action="block", mode="enforce", outcome="blocked")
    assert h["remote"].startswith("[::1]:"), h


# ---------------------------------------------------------------------------------------------
# the patches of docs/rules.md, as written there

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def documented_patches():
    text = DOCS.read_text()
    section = text.split("## Three virtual patches", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```ini\n")[1:]]
    assert len(blocks) == 3, f"expected three ```ini blocks in the section, found {len(blocks)}"
    return "\n".join(blocks)


def test_documented_patches(moatd, origin, cams):
    """The three patches of docs/rules.md ("Three virtual patches") against the attacks the
    text names, and the near misses it promises to leave alone."""
    devices = {"dev-1": {"model": "CAM-1", "firmware": "2.1.0-rc.2"},
               "dev-2": {"model": "CAM-1", "firmware": "2.1.0"},
               "dev-3": {"model": "CAM-2", "firmware": "1.0"}}
    m = start_rules(moatd, documented_patches(), devices=devices)
    problems, _ = run_cases(
        m, cams.dev1,
        ["/cgi-bin/diag.cgi?host=8.8.8.8;cat%20/etc/passwd",
         "/cgi-bin/diag.cgi?host=8.8.8.8%3Bid", "/cgi-bin/diag.cgi?host=8.8.8.8%7Cid",
         "/cgi-bin/diag.cgi?host=%24%28id%29", "/cgi-bin/diag.cgi?host=8.8.8.8%0Aid",
         "/cgi-bin/diag.cgi?host=8.8.8.8%253Bid", "//cgi-bin/diag.cgi?host=;id",
         "/x/../cgi-bin/diag.cgi?host=;id"],
        ["/cgi-bin/diag.cgi?host=8.8.8.8", "/v1..2/app.js"],
        "cve-2026-0001", curl_extra=("--path-as-is",))
    more, _ = run_cases(
        m, cams.dev1,
        ["/files/..%2f..%2fetc/passwd", "/files/%2e%2e%2fetc/passwd", "/files/%2E%2E/etc",
         "/files/..%252fetc/passwd", "/files/%252e%252e%252fetc/passwd"],
        [], "traversal-encoded", curl_extra=("--path-as-is",))
    problems += more
    for cert, blocked in ((cams.dev1, True), (cams.dev2, False), (cams.dev3, False)):
        r = curl(m, "/api/settings", cert=cert, headers=["X-Debug-Auth: yes"])
        try:
            if blocked:
                assert_blocked(r, "cam1-debug-auth-bypass", status=401)
            else:
                assert r.status == 200, r
        except AssertionError as e:
            problems.append(f"{cert.cn}: {e}")
    assert not problems, "\n".join(problems)


def test_rules_belong_to_their_tenant(moatd, origin, cams, pki):
    """alpha's patches do not apply to beta's devices."""
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    attack = "/cgi-bin/diag?host=1.2.3.4;id"
    assert_blocked(curl(m, attack, cert=cams.dev1), "cve-2026-0001")
    r = curl(m, attack, cert=pki.beta_dev, host="beta.test")
    assert r.status == 200, r
    assert origin_uris(origin) == [attack]
    assert origin.entries()[0]["tenant"] == "beta"


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_connection_and_device_fields(moatd, origin, cams, tls):
    """Every connection and device field a rule can read, as moatd computes it, against what
    openssl says about the certificate: one log rule per field, and which of them hit."""
    c = cams.dev1
    fields = {
        "f-tls-version": f'tls.version == "TLSv{tls}"',
        "f-tls-sni": 'tls.sni == "alpha.test"',
        "f-verified": "tls.client.verified",
        "f-fingerprint": f'tls.client.fingerprint == "{c.sha256}"',
        "f-serial": f'tls.client.serial == "{c.serial}"',
        "f-tenant": 'tenant == "alpha"',
        "f-device-id": 'device.id == "dev-1"',
        "f-model": 'device.model == "cam-x"',
        "f-firmware": 'device.firmware == "2.3" and device.firmware > "2.2.99"',
        "f-tags": 'any(device.tags == "batch-7") and count(device.tags) == 2',
        "f-ip": "ip.src == 127.0.0.0/8",
        "f-host": 'starts_with(http.host, "alpha.test:")',  # the Host header, port included
        "f-method": 'http.request.method in {"GET" "HEAD"}',
        "f-ua": 'http.user_agent == "cam-x/2.3.0"',
        "f-header-names": 'any(http.request.headers.names == "x-cam-channel")',
        "f-args": 'count(http.request.uri.args.names) == 2 and any(http.request.uri.args["b"] '
                  '== "x y")',
        "f-uri": 'http.request.uri == "/f/./g?a=1&b=x+y"',
        "f-path": 'http.request.uri.path == "/f/g"',
        "f-path-raw": 'http.request.uri.path.raw == "/f/./g"',
        "f-query": 'http.request.uri.query == "a=1&b=x+y"',
        # these must not hit
        "x-other-tls": 'tls.version == "TLSv1.0"',
        "x-unknown-header": 'http.request.headers["x-nope"] == ""',
        "x-firmware-ne": 'device.firmware != "2.3.0"',
    }
    rules = "".join(f"\n[rule {rid}]\nname = {rid}\naction = log\nexpr = {expr}\n"
                    for rid, expr in fields.items())
    m = start_rules(moatd, rules, devices=DEVICES)
    r = curl(m, "/f/./g?a=1&b=x+y", cert=c, tls=tls, extra=("--path-as-is",),
             headers=["User-Agent: cam-x/2.3.0", "X-Cam-Channel: 2"])
    assert r.status == 200, r
    e = origin.one()
    time.sleep(0.2)
    hits = {h["rule"] for h in m.security_entries() if h["request_id"] == e["request_id"]}
    want = {rid for rid in fields if rid.startswith("f-")}
    assert hits == want, f"missing hits: {sorted(want - hits)}, unexpected: {sorted(hits - want)}"


def test_block_answers_head_and_http10(moatd, origin, cams):
    m = start_rules(moatd, PATCHES, devices=DEVICES)
    with HTTPConn(m, cert=cams.dev1) as c:
        c.request("HEAD", "/cgi-bin/diag?host=;id")
        r = c.response(head_request=True)
        assert r.status == 403 and r.body == b"", r
        c.request("GET", "/next")
        r = c.response()
        assert r.status == 200, f"the HEAD's 403 left bytes on the connection? {r!r}"
    with HTTPConn(m, cert=cams.dev1) as c:
        c.send(b"GET /cgi-bin/diag?host=;id HTTP/1.0\r\nHost: alpha.test\r\n\r\n")
        r = c.response()
        assert_blocked(r, "cve-2026-0001")
        assert c.closed_within(3), "an HTTP/1.0 connection stayed open after its answer"
    assert origin_uris(origin) == ["/next"]
