"""TCP listeners (protocol = tcp): bytes both ways with the device's identity behind mTLS,
the access log line, half-close in both directions, resets passed on, origins that refuse or
never answer, idle timeout, revocation of an open stream, plain-TCP listeners with allow/deny,
and draining.

Every test drives both ends itself: a TLS device (moattest.tcp.TlsDevice) on one side, a
python origin whose connections the test takes one by one (TcpOrigin.accept) on the other.
"""

import os
import re
import signal
import time

import pytest

from moattest.tcp import (TCP_ACCESS_FIELDS, Ended, FullAcceptQueue, PlainDevice, TcpOrigin,
                          device, echo_handler, entry_for, start_tcp)
from moattest.util import free_port, tcp_refused, wait_until

VERSIONS = ["1.2", "1.3"]


@pytest.fixture
def tcp_origin():
    """A python origin the test drives by hand: origin.accept() gives the next connection."""
    o = TcpOrigin()
    yield o
    o.close()


@pytest.fixture
def echo_origin():
    o = TcpOrigin(handler=echo_handler)
    yield o
    o.close()


def assert_ended(dev, within, how=None):
    t0 = time.monotonic()
    assert dev.ends_within(within), (f"the device connection was still open {within}s later "
                                     f"(got {len(dev.buf)} bytes meanwhile)")
    if how is not None:
        assert dev.end == how, (f"the device connection ended by {dev.end!r}, expected {how!r} "
                                f"(after {time.monotonic() - t0:.2f}s)")


def warn_lines(m, start=0):
    return [l for l in m.log_lines()[start:] if "[warn]" in l]


# ---------------------------------------------------------------------------------------------
# bytes both ways, and the access log line

@pytest.mark.parametrize("tls", VERSIONS)
def test_bytes_both_ways_and_access_log(moatd, pki, tcp_origin, tls):
    m = start_tcp(moatd, tcp_origin.url)
    up, down = os.urandom(1234), os.urandom(4321)
    t0 = time.monotonic()
    with device(m, pki.dev1, tls=tls) as d:
        c = tcp_origin.accept()
        assert c.peer[0] == "127.0.0.1"
        d.sendall(up)
        assert c.recv_exact(len(up)) == up
        c.sendall(down)
        assert d.recv_exact(len(down)) == down
        time.sleep(0.3)
        d.shutdown_write()
        assert c.read_to_end() == b"" and c.end == "eof"
        c.shutdown_write()
        assert d.read_to_end() == b""
        assert d.end == "close_notify", f"moatd ended the device stream by {d.end}"
        elapsed_ms = (time.monotonic() - t0) * 1000
        c.close()
    e = entry_for(m, d)
    missing = [f for f in TCP_ACCESS_FIELDS if f not in e]
    assert not missing, f"access log line lacks {missing}: {e}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]), e["time"]
    assert re.fullmatch(r"[0-9a-f]{16}", e["conn_id"]), e["conn_id"]
    assert e["listener"] == "tcp"
    assert e["remote"] == f"127.0.0.1:{d.local_port}"
    assert (e["tenant"], e["device"]) == ("alpha", "dev-1")
    assert e["origin"] == tcp_origin.url
    assert (e["bytes_up"], e["bytes_down"]) == (len(up), len(down)), e
    assert isinstance(e["duration_ms"], (int, float))
    assert 300 <= e["duration_ms"] <= elapsed_ms + 500, (e["duration_ms"], elapsed_ms)
    assert e["end"] == "closed", e
    assert e["tls"] == f"TLSv{tls}" and e["resumed"] is False, e
    # one connection, one line
    assert len([x for x in m.tcp_entries() if x["remote"] == e["remote"]]) == 1


@pytest.mark.parametrize("tls", VERSIONS)
def test_resumed_session_is_logged(moatd, pki, echo_origin, tls):
    m = start_tcp(moatd, echo_origin.url)
    with device(m, pki.dev1, tls=tls) as d1:
        d1.sendall(b"first")
        assert d1.recv_exact(5) == b"first"  # TLS 1.3 tickets arrive with the data
        session = d1.session
        d1.shutdown_write()
        d1.read_to_end()
    assert session is not None
    with device(m, pki.dev1, ctx=d1.ctx, session=session) as d2:
        assert d2.session_reused, "moatd did not resume the session"
        d2.sendall(b"second")
        assert d2.recv_exact(6) == b"second"
        d2.shutdown_write()
        d2.read_to_end()
    e1, e2 = entry_for(m, d1), entry_for(m, d2)
    assert (e1["resumed"], e2["resumed"]) == (False, True), (e1, e2)
    assert e2["device"] == "dev-1" and e2["bytes_up"] == 6 and e2["end"] == "closed", e2
    assert e1["conn_id"] != e2["conn_id"]


def test_binary_bytes_pass_unchanged(moatd, pki, echo_origin):
    """Every byte value, TLS record boundaries anywhere: what goes in comes out."""
    m = start_tcp(moatd, echo_origin.url)
    data = bytes(range(256)) * 64 + b"\r\n\r\n\x00PROXY \r\nQUIT\n" + os.urandom(100000)
    with device(m, pki.dev1) as d:
        for i in range(0, len(data), 777):
            d.sendall(data[i:i + 777])
        assert d.recv_exact(len(data), timeout=10) == data
        d.shutdown_write()
        assert d.read_to_end() == b""
    e = entry_for(m, d)
    assert (e["bytes_up"], e["bytes_down"], e["end"]) == (len(data), len(data), "closed"), e


# ---------------------------------------------------------------------------------------------
# half-close

def test_half_close_device_first(moatd, pki, tcp_origin):
    """The device sends and half-closes; the origin reads to EOF, then still answers."""
    m = start_tcp(moatd, tcp_origin.url)
    reply = os.urandom(300 * 1024)
    with device(m, pki.dev1) as d:
        c = tcp_origin.accept()
        d.sendall(b"request, then my FIN")
        d.shutdown_write()
        assert c.read_to_end(timeout=5) == b"request, then my FIN"
        assert c.end == "eof", f"the origin saw {c.end}, expected a FIN"
        time.sleep(0.2)  # the device's half-closed stream stays open the other way
        c.sendall(reply)
        c.shutdown_write()
        got = d.read_to_end(timeout=10)
        assert len(got) == len(reply) and got == reply, f"{len(got)} of {len(reply)} bytes"
        assert d.end == "close_notify", d.end
        c.close()
    e = entry_for(m, d)
    assert (e["bytes_up"], e["bytes_down"], e["end"]) == (20, len(reply), "closed"), e


def test_half_close_origin_first(moatd, pki, tcp_origin):
    """The origin sends and half-closes; the device gets close_notify + FIN, then sends on."""
    m = start_tcp(moatd, tcp_origin.url)
    late = os.urandom(300 * 1024)
    with device(m, pki.dev1) as d:
        c = tcp_origin.accept()
        c.sendall(b"greeting, then my FIN")
        c.shutdown_write()
        assert d.read_to_end(timeout=5) == b"greeting, then my FIN"
        assert d.end == "close_notify", f"the device saw {d.end}, expected close_notify"
        time.sleep(0.2)
        d.sendall(late)
        got = c.recv_exact(len(late), timeout=10)
        assert got == late
        d.shutdown_write()
        assert c.read_to_end() == b"" and c.end == "eof"
        c.close()
    e = entry_for(m, d)
    assert (e["bytes_up"], e["bytes_down"], e["end"]) == (len(late), 21, "closed"), e


# ---------------------------------------------------------------------------------------------
# resets

def test_origin_reset_resets_the_device(moatd, pki, tcp_origin):
    m = start_tcp(moatd, tcp_origin.url)
    with device(m, pki.dev1) as d:
        c = tcp_origin.accept()
        d.sendall(b"hello")
        assert c.recv_exact(5) == b"hello"
        c.reset()
        assert_ended(d, 2, "reset")
    e = entry_for(m, d)
    assert e["end"] == "origin_reset", e


def test_device_reset_resets_the_origin(moatd, pki, tcp_origin):
    m = start_tcp(moatd, tcp_origin.url)
    d = device(m, pki.dev1)
    c = tcp_origin.accept()
    d.sendall(b"hello")
    assert c.recv_exact(5) == b"hello"
    d.reset()
    assert c.ends_within(2), "the origin connection stayed open after the device reset"
    assert c.end == "reset", f"the origin saw {c.end}, expected a reset"
    e = entry_for(m, d)
    assert e["end"] == "device_reset", e


# ---------------------------------------------------------------------------------------------
# origins that refuse or never answer

def test_origin_unreachable(moatd, pki):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    m = start_tcp(moatd, url)
    start = len(m.log_lines())
    with device(m, pki.dev1) as d:
        try:
            d.sendall(b"anyone there?")
        except OSError:
            pass
        assert_ended(d, 3)
        assert not d.buf
    line = m.wait_log(rf"\[warn\] tcp origin {re.escape(url)} for tenant alpha unreachable: "
                      r"connect: Connection refused", start=start)
    assert line
    e = entry_for(m, d)
    assert e["end"] == "origin_unreachable" and e["bytes_down"] == 0, e


def test_origin_connect_timeout(moatd, pki):
    q = FullAcceptQueue()
    try:
        assert q.connect_hangs(0.5), "the full-accept-queue trick does not work here"
        m = start_tcp(moatd, q.url, moat={"origin_connect_timeout": "1s"})
        with device(m, pki.dev1) as d:
            t0 = time.monotonic()
            try:
                d.sendall(b"hello?")
            except OSError:
                pass
            assert d.ends_within(5), "the device connection outlived origin_connect_timeout=1s"
            took = d.ended_at - t0
        assert 0.7 <= took <= 3.0, f"closed {took:.2f}s after the handshake, expected ~1s"
        e = entry_for(m, d)
        assert e["end"] == "origin_connect_timeout", e
    finally:
        q.close()


# ---------------------------------------------------------------------------------------------
# idle timeout

def test_idle_timeout(moatd, pki, tcp_origin):
    m = start_tcp(moatd, tcp_origin.url, moat={"tcp_idle_timeout": "1s"})
    with device(m, pki.dev1) as d:
        c = tcp_origin.accept()
        # traffic every 0.4 s keeps it open well past 1 s, in either direction
        for i in range(6):
            time.sleep(0.4)
            if i % 2:
                d.sendall(b"u")
                assert c.recv_exact(1) == b"u"
            else:
                c.sendall(b"d")
                assert d.recv_exact(1) == b"d"
        t0 = time.monotonic()  # the last byte
        assert d.ends_within(4), "an idle connection outlived tcp_idle_timeout=1s"
        took = d.ended_at - t0
        assert 0.8 <= took <= 2.5, f"closed {took:.2f}s after the last byte, expected ~1s"
        assert c.ends_within(2), "the origin side stayed open"
    e = entry_for(m, d)
    assert e["end"] == "idle_timeout" and (e["bytes_up"], e["bytes_down"]) == (3, 3), e


# ---------------------------------------------------------------------------------------------
# revocation

def test_revocation_closes_the_open_stream(moatd, pki, echo_origin, tmp_path):
    x = pki.issue_device("tcp-revoke-x")
    crl = tmp_path / "alpha.crl.pem"
    pki.alpha_ca.make_crl([pki.revoked], crl)
    m = start_tcp(moatd, echo_origin.url, tenant_keys={"crl": str(crl)})
    dx = device(m, x)
    d1 = device(m, pki.dev1)
    try:
        for d in (dx, d1):
            d.sendall(b"ping")
            assert d.recv_exact(4) == b"ping"
        pki.alpha_ca.make_crl([pki.revoked, x], crl)
        t0 = time.monotonic()
        m.reload(settle=0)
        assert dx.ends_within(max(0.1, t0 + 1.5 - time.monotonic())), \
            "the revoked device's open TCP connection was not closed within 1.5s of SIGHUP"
        took = dx.ended_at - t0
        # the other device's stream goes on
        d1.sendall(b"still here")
        assert d1.recv_exact(10) == b"still here"
        e = entry_for(m, dx)
        assert e["end"] == "revoked" and e["device"] == "tcp-revoke-x", e
        # and X cannot come back
        conns = len(echo_origin.conns)
        start = len(m.log_lines())
        try:
            with device(m, x) as again:
                # TLS 1.3: the client finishes its handshake before the server's verdict
                again.sendall(b"let me in")
                assert again.ends_within(3)
                assert not again.buf, f"a revoked device got data back: {bytes(again.buf)!r}"
        except (OSError, Ended):  # the handshake itself failed
            pass
        m.wait_log(r"\[warn\] tls handshake refused:(?=.* listener=tcp\b)(?=.*revoked)",
                   start=start)
        time.sleep(0.3)
        assert len(echo_origin.conns) == conns, "the origin saw the revoked device again"
    finally:
        dx.close()
        d1.close()
    assert took <= 1.5, took


# ---------------------------------------------------------------------------------------------
# plain TCP (tls = off), allow and deny

PLAIN = "legacy"


def start_plain(moatd, origin_url, **listener_keys):
    lk = {"tls": "off", "default_tenant": "plain"}
    lk.update(listener_keys)
    return start_tcp(moatd, origin_url, tenant="plain", listener=lk, name=PLAIN,
                     tenant_keys={"proxy_protocol": "v2"})


def test_plain_listener_forwards_bytes(moatd, pki):
    with TcpOrigin(pp2=True) as origin:
        m = start_plain(moatd, origin.url, allow="127.0.0.1")
        with PlainDevice(m.listener_port(PLAIN)) as d:
            c = origin.accept()
            d.sendall(b"plain hello")
            assert c.recv_exact(11) == b"plain hello"
            h = c.header
            assert h.src == ("127.0.0.1", d.local_port), h
            assert h.dst == ("127.0.0.1", m.listener_port(PLAIN)), h
            assert h.ssl is None, f"a tls = off connection must carry no PP2_TYPE_SSL: {h}"
            assert h.text(0xE0) == "plain", h
            for t in (0x02, 0xE1, 0xE2, 0xE3):
                assert h.tlv(t) is None, f"TLV 0x{t:02x} on a plain connection: {h}"
            c.sendall(b"plain reply")
            assert d.recv_exact(11) == b"plain reply"
            d.shutdown_write()
            assert c.read_to_end() == b""
            c.shutdown_write()
            assert d.read_to_end() == b""
        e = m.wait_tcp_access(1, where=lambda x: x["remote"] == f"127.0.0.1:{d.local_port}")[0]
        assert (e["listener"], e["tenant"], e["bytes_up"], e["bytes_down"], e["end"]) == \
            (PLAIN, "plain", 11, 11, "closed"), e
        assert e["conn_id"] == h.text(0x05), (e, h)


@pytest.mark.parametrize("keys", [{"allow": "10.0.0.0/8"}, {"deny": "127.0.0.1"},
                                  {"allow": "127.0.0.0/8,::1", "deny": "127.0.0.1"}],
                         ids=["outside-allow", "denied", "deny-wins"])
def test_plain_listener_refuses_sources(moatd, pki, keys):
    with TcpOrigin() as origin:
        m = start_plain(moatd, origin.url, **keys)
        start = len(m.log_lines())
        with PlainDevice(m.listener_port(PLAIN)) as d:
            try:
                d.sendall(b"let me in")
            except OSError:
                pass
            assert_ended(d, 1.0)
            assert not d.buf, f"a refused source got bytes: {bytes(d.buf)!r}"
        origin.assert_no_connection()
        wait_until(lambda: warn_lines(m, start), 3, what="a warn line about the refused source")
        assert any(PLAIN in l for l in warn_lines(m, start)), warn_lines(m, start)
        # a flood of refused connections: still refused, but the warn line is rate-limited
        for _ in range(30):
            with PlainDevice(m.listener_port(PLAIN)) as d:
                assert_ended(d, 1.0)
        time.sleep(0.3)
        origin.assert_no_connection(settle=0)
        n = len(warn_lines(m, start))
        assert n <= 10, f"{n} warn lines for 31 refused connections: not rate-limited"


def test_deny_on_a_tls_tcp_listener(moatd, pki, tcp_origin):
    m = start_tcp(moatd, tcp_origin.url, listener={"deny": "127.0.0.0/8"})
    with pytest.raises((OSError, Ended, TimeoutError)):
        with device(m, pki.dev1, timeout=3) as d:
            d.sendall(b"x")
            if d.ends_within(2):
                raise Ended(d.end)
    tcp_origin.assert_no_connection()


# ---------------------------------------------------------------------------------------------
# draining

def test_sigterm_lets_streams_flow_until_drain_timeout(moatd, pki, echo_origin):
    m = start_tcp(moatd, echo_origin.url, moat={"drain_timeout": "2s"})
    port = m.listener_port("tcp")
    with device(m, pki.dev1) as d:
        d.sendall(b"before")
        assert d.recv_exact(6) == b"before"
        t0 = time.monotonic()
        m.send_signal(signal.SIGTERM)
        wait_until(lambda: tcp_refused("127.0.0.1", port), 2,
                   what="the tcp listener to stop accepting")
        time.sleep(0.5)
        d.sendall(b"during drain")
        assert d.recv_exact(12) == b"during drain", "the stream stopped flowing at SIGTERM"
        assert d.ends_within(4), "the stream outlived drain_timeout=2s"
        took = d.ended_at - t0
        assert 1.5 <= took <= 3.5, f"closed {took:.2f}s after SIGTERM, drain_timeout=2s"
    assert m.wait(timeout=5) == 0
    e = entry_for(m, d)
    assert e["end"] == "shutdown" and e["bytes_up"] == 18, e


# ---------------------------------------------------------------------------------------------
# reloads and open streams

def test_reload_leaves_other_streams_alone_and_closes_a_removed_tenant(moatd, pki,
                                                                       echo_origin):
    m = start_tcp(moatd, echo_origin.url, tenants={"gamma": {"tcp_origin": echo_origin.url}})
    da = device(m, pki.dev1)
    dg = device(m, pki.dev1, server_hostname="gamma.test")
    try:
        for d in (da, dg):
            d.sendall(b"ping")
            assert d.recv_exact(4) == b"ping"
        m.configure(moat={"drain_timeout": "3s"}, listeners={"tcp": {"protocol": "tcp"}},
                    tenants={"alpha": {"tcp_origin": echo_origin.url}})
        m.reload()
        assert dg.ends_within(2), "a stream of a removed tenant stayed open"
        da.sendall(b"still flowing")
        assert da.recv_exact(13) == b"still flowing", "a reload disturbed an unrelated stream"
        e = entry_for(m, dg)
        assert (e["tenant"], e["end"]) == ("gamma", "tenant_removed"), e
    finally:
        da.close()
        dg.close()


# ---------------------------------------------------------------------------------------------
# configuration checks (moatd -t)

BROKEN_TCP = [
    ("tls-off-on-http", dict(listener={"tls": "off"}), "listener devices", "tls"),
    ("bad-tls", dict(tcp_listener={"tls": "maybe"}), "listener tcp", "tls"),
    ("bad-allow", dict(tcp_listener={"allow": "127.0.0.1/33"}), "listener tcp", "allow"),
    ("bad-deny", dict(tcp_listener={"deny": "not-an-address"}), "listener tcp", "deny"),
    ("bad-tcp-origin", dict(tenant={"tcp_origin": "http://127.0.0.1:1883"}), "tenant alpha",
     "tcp_origin"),
    ("bad-proxy-protocol", dict(tenant={"proxy_protocol": "v1"}), "tenant alpha",
     "proxy_protocol"),
    ("tcp-buffer-too-small", dict(moat={"tcp_buffer": "1k"}), "moat", "tcp_buffer"),
    ("tcp-buffer-too-big", dict(moat={"tcp_buffer": "32m"}), "moat", "tcp_buffer"),
    ("bad-tcp-idle-timeout", dict(moat={"tcp_idle_timeout": "soon"}), "moat",
     "tcp_idle_timeout"),
]


@pytest.mark.parametrize("name,over,section,key", BROKEN_TCP, ids=[b[0] for b in BROKEN_TCP])
def test_check_broken_tcp_config(moatd, name, over, section, key):
    moat_keys = {"drain_timeout": "3s"}
    moat_keys.update(over.get("moat", {}))
    tk = {"tcp_origin": "tcp://127.0.0.1:1883"}
    tk.update(over.get("tenant", {}))
    lk = {"protocol": "tcp"}
    lk.update(over.get("tcp_listener", {}))
    m = moatd(start=False, moat=moat_keys, listener=over.get("listener"),
              listeners={"tcp": lk}, tenants={"alpha": tk})
    p = m.check_config()
    assert p.returncode == 1, p
    line = m.config_line(section, key)
    assert f"{m.conf}:{line}:" in p.stderr, (line, p.stderr)


def test_check_good_tcp_config(moatd):
    """Every TCP key at once, including a certificate-less tenant for a plain listener."""
    m = moatd(start=False, moat={"tcp_idle_timeout": "5m", "tcp_buffer": "256k"},
              listeners={"tcp": {"protocol": "tcp", "allow": "127.0.0.0/8, ::1",
                                 "deny": "10.0.0.0/8"},
                         "legacy": {"protocol": "tcp", "tls": "off",
                                    "default_tenant": "plain", "allow": "127.0.0.1"}},
              tenants={"alpha": {"tcp_origin": "tls://127.0.0.1:8883", "proxy_protocol": "v2"},
                       "plain": {"tcp_origin": "tcp://127.0.0.1:2323"}})
    p = m.check_config()
    assert p.returncode == 0, p


def section_lines(m, section):
    """1-based line numbers of [section]'s header and keys in the written config."""
    lines, current = set(), None
    for n, line in enumerate(m.conf.read_text().splitlines(), 1):
        mm = re.match(r"\s*\[(.+)\]\s*$", line)
        if mm:
            current = mm.group(1)
        if current == section:
            lines.add(n)
    return lines


@pytest.mark.parametrize("case", ["plain-without-default-tenant", "tenant-without-origins"])
def test_check_incomplete_tcp_config(moatd, case):
    if case == "plain-without-default-tenant":
        m = moatd(start=False, listeners={"legacy": {"protocol": "tcp", "tls": "off"}})
        section = "listener legacy"
    else:
        m = moatd(start=False, tenants={"beta": {"origin": None}})
        section = "tenant beta"
    p = m.check_config()
    assert p.returncode == 1, p
    reported = {int(n) for n in re.findall(rf"{re.escape(str(m.conf))}:(\d+):", p.stderr)}
    assert reported & section_lines(m, section), (section, p.stderr)
