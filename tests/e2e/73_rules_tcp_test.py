"""Virtual patches on TCP listeners: tcp_rules see connection fields only (ip, tls, device) and
run once per connection, after the handshake (at accept with tls = off), before the origin is
contacted. A blocked connection is closed without a byte, the origin never sees it, its access
log line ends "blocked" and the security log has a line with its conn_id. A tcp_rules file that
reads an http.* field is refused.
"""

import socket
import time

import pytest

from moattest.rules import (assert_caret, check_seclog_entry, locate, parse_check_output,
                            reload_and_wait, start_rules, stats_rule, write_atomic)
from moattest.tcp import PlainDevice, TcpOrigin, device, echo_handler, remote_of

TCP = "tcp"
PLAIN = "legacy"

DEVICES = {
    "dev-1": {"model": "cam-x", "firmware": "2.3.0"},
    "dev-2": {"model": "cam-x", "firmware": "2.10.0"},
    "dev-3": {"model": "doorbell-y", "firmware": "1.0.0"},
}

TCP_RULES = """
[rule quarantine]
name = Quarantined devices
reference = CVE-2026-0200
expr = device.id in {"dev-1" "dev-9"}

[rule old-doorbells]
name = Doorbells before 2.0 speak a broken MQTT
action = close
expr = device.model == "doorbell-y" and device.firmware < "2.0"
"""


@pytest.fixture
def echo():
    o = TcpOrigin(handler=echo_handler)
    yield o
    o.close()


def start_tcp_rules(moatd, origin_url, tcp_rules, **kw):
    return start_rules(moatd, tcp_rules=tcp_rules, devices=DEVICES,
                       moat={"drain_timeout": "3s"},
                       tenant_keys={"tcp_origin": origin_url},
                       listeners={TCP: {"protocol": "tcp"}}, **kw)


def tcp_line(m, dev, timeout=5):
    r = remote_of(dev)
    (e,) = m.wait_tcp_access(1, timeout=timeout, where=lambda x: x.get("remote") == r)
    return e


def assert_refused(dev, within=2.0):
    assert dev.ends_within(within), "the connection stayed open"
    assert not dev.buf, f"a blocked connection received bytes: {bytes(dev.buf)!r}"


def echo_works(dev, data=b"hello through moatd"):
    dev.sendall(data)
    assert dev.recv_exact(len(data)) == data
    dev.shutdown_write()
    assert dev.read_to_end() == b""


def test_tcp_rules_block_devices_and_let_others_through(moatd, cams, echo):
    m = start_tcp_rules(moatd, echo.url, TCP_RULES)
    with device(m, cams.dev1) as d1:
        try:
            d1.sendall(b"CONNECT mqtt")
        except OSError:
            pass
        assert_refused(d1)
    with device(m, cams.dev3) as d3:
        assert_refused(d3)
    time.sleep(0.3)
    assert echo.conns == [], "the origin saw a blocked connection"
    with device(m, cams.dev2) as d2:
        echo_works(d2)
    assert len(echo.conns) == 1

    e1, e2, e3 = tcp_line(m, d1), tcp_line(m, d2), tcp_line(m, d3)
    assert (e1["end"], e1["device"], e1["bytes_up"], e1["bytes_down"]) == \
        ("blocked", "dev-1", 0, 0), e1
    assert (e3["end"], e3["device"]) == ("blocked", "dev-3"), e3
    assert e2["end"] == "closed" and e2["device"] == "dev-2", e2

    hits = m.wait_security(2)
    assert len(hits) == 2, hits
    by_conn = {h["conn_id"]: h for h in hits}
    h1 = check_seclog_entry(by_conn[e1["conn_id"]], rule="quarantine", action="block",
                            mode="enforce", outcome="blocked", device="dev-1", listener=TCP,
                            http=False)
    assert h1["reference"] == "CVE-2026-0200" and h1["remote"] == e1["remote"], h1
    check_seclog_entry(by_conn[e3["conn_id"]], rule="old-doorbells", action="close",
                       mode="enforce", outcome="closed", device="dev-3", listener=TCP,
                       http=False)

    s = m.rules_stats()
    assert stats_rule(s, "quarantine", kind="tcp_rules")["hits_enforce"] == 1, s
    assert stats_rule(s, "old-doorbells", kind="tcp_rules")["hits_enforce"] == 1, s
    assert s["tenants"]["alpha"]["rules"] == [], s


class SourceBoundDevice(PlainDevice):
    """A plain device whose connection comes from `source` (any 127.0.0.0/8 address)."""

    def __init__(self, port, source, timeout=5):
        self.host, self.port, self.timeout = "127.0.0.1", port, timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.local = self.sock.getsockname()[:2]
        self.buf = bytearray()
        self.ended_at = None


IP_RULES = """
[rule botnet-range]
name = Sources of a known botnet
expr = ip.src in {127.0.0.2 10.66.0.0/16 2001:db8::/32}
"""


def test_tcp_rule_on_source_address(moatd, echo):
    """tls = off: the rule runs at accept, on ip.src."""
    m = start_rules(moatd, tcp_rules=IP_RULES, tenant="plain", moat={"drain_timeout": "3s"},
                    tenant_keys={"tcp_origin": echo.url},
                    listeners={PLAIN: {"protocol": "tcp", "tls": "off",
                                       "default_tenant": "plain"}})
    port = m.listener_port(PLAIN)
    with SourceBoundDevice(port, "127.0.0.2") as bad:
        assert_refused(bad)
    time.sleep(0.3)
    assert echo.conns == [], "the origin saw a blocked connection"
    with SourceBoundDevice(port, "127.0.0.1") as good:
        echo_works(good)
    eb, eg = tcp_line(m, bad), tcp_line(m, good)
    assert eb["end"] == "blocked" and eb["remote"].startswith("127.0.0.2:"), eb
    assert eg["end"] == "closed", eg
    (h,) = m.wait_security(1)
    check_seclog_entry(h, rule="botnet-range", action="block", mode="enforce",
                       outcome="blocked", tenant="plain", listener=PLAIN, http=False)
    assert (h["conn_id"], h["remote"]) == (eb["conn_id"], eb["remote"]), h


def test_tcp_dry_run(moatd, cams, echo):
    m = start_tcp_rules(moatd, echo.url,
                        TCP_RULES.replace("expr = device.id", "mode = dry-run\nexpr = device.id"))
    with device(m, cams.dev1) as d1:
        echo_works(d1)
    e = tcp_line(m, d1)
    assert e["end"] == "closed", e
    (h,) = m.wait_security(1)
    assert (h["rule"], h["mode"], h["outcome"], h["conn_id"]) == \
        ("quarantine", "dry-run", "would block", e["conn_id"]), h


def test_tcp_rules_follow_sighup(moatd, cams, echo):
    m = start_tcp_rules(moatd, echo.url, TCP_RULES)
    with device(m, cams.dev2) as d:
        echo_works(d)
    write_atomic(m.tcp_rules_path, TCP_RULES.replace('"dev-9"', '"dev-2"'))
    reload_and_wait(m)
    with device(m, cams.dev2) as d:
        assert_refused(d)
    assert tcp_line(m, d)["end"] == "blocked"


HTTP_IN_TCP = """
[rule fine]
name = Fine
expr = device.id == "dev-9"

[rule needs-http]
name = Reads an HTTP field
expr = device.id == "dev-1" and starts_with(http.request.uri.path, "/cgi-bin/")
"""


def test_tcp_rules_with_http_field_refused(moatd, cams, echo):
    m = start_tcp_rules(moatd, echo.url, HTTP_IN_TCP, start=False)
    line, col = locate(HTTP_IN_TCP, "http.request.uri.path")
    p = m.check_config()
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    errs = [e for e in parse_check_output(out) if e[0] == str(m.tcp_rules_path)]
    assert errs, f"no '{m.tcp_rules_path}:LINE: column N:' line in:\n{out}"
    assert (errs[0][1], errs[0][2]) == (line, col), f"expected {line}:{col}:\n{out}"
    assert errs[0][3].startswith("rule needs-http: "), errs[0]
    assert "http.request.uri.path" in errs[0][3] and "HTTP" in errs[0][3], errs[0]
    assert_caret(errs[0], HTTP_IN_TCP)
    # the same file on SIGHUP: refused, the running tcp rules stay
    write_atomic(m.tcp_rules_path, TCP_RULES)
    m.start()
    write_atomic(m.tcp_rules_path, HTTP_IN_TCP)
    new = reload_and_wait(m, expect_ok=False)
    assert any(f"{m.tcp_rules_path}:{line}:" in l and f"column {col}" in l
               for l in new if "[error]" in l), new
    with device(m, cams.dev1) as d:
        assert_refused(d)
    assert tcp_line(m, d)["end"] == "blocked"
    # the same expression in an HTTP rules file is fine
    m2 = start_rules(moatd, HTTP_IN_TCP, start=False)
    assert m2.check_config().returncode == 0
