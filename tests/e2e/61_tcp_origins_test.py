"""Real origins behind TCP listeners: MQTT over mutual TLS to a mosquitto broker, HAProxy
reading moatd's PROXY v2 header, the header's every TLV checked by a strict parser, IPv6, and
tls:// origins verified against origin_ca."""

import ssl
import subprocess
import time

import pytest

from moattest import pp2
from moattest.tcp import (TcpOrigin, device, echo_handler, entry_for, start_tcp)
from moattest.thirdparty import MOSQUITTO_PUB, MOSQUITTO_SUB, mqtt_tls_args
from moattest.util import run

VERSIONS = ["1.2", "1.3"]


# ---------------------------------------------------------------------------------------------
# MQTT over mTLS to mosquitto

MQTT = "mqtt"


def start_mqtt(moatd, pki, mosquitto):
    """Listener `mqtt` (protocol tcp) whose default tenant `mq` is served as 127.0.0.1 /
    localhost (so MQTT clients verify the name they connect to) and forwards to the broker."""
    return start_tcp(moatd, mosquitto.url, tenant="mq", name=MQTT,
                     listener={"default_tenant": "mq"},
                     tenant_keys={"hosts": "localhost",
                                  "cert": str(pki.local_server.cert),
                                  "key": str(pki.local_server.key),
                                  "device_ca": str(pki.alpha_ca.cert),
                                  "crl": str(pki.alpha_crl),
                                  "mtls": "require",
                                  "device_id": "cn"})


def start_sub(args, client_id, topic, count):
    return subprocess.Popen([MOSQUITTO_SUB, *args, "-t", topic, "-C", str(count), "-W", "15",
                             "-q", "1", "-i", client_id, "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=15):
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_mqtt_both_ways_through_moatd(moatd, pki, mosquitto):
    m = start_mqtt(moatd, pki, mosquitto)
    port = m.listener_port(MQTT)
    direct = ["-h", "127.0.0.1", "-p", str(mosquitto.port)]
    mark = mosquitto.mark()
    # down: a device subscribed through moatd gets what the backend and another device publish
    dsub = start_sub(mqtt_tls_args(pki, pki.dev1, port), "dev1-sub", "moat/down", 2)
    # up: a backend subscriber gets what a device publishes through moatd
    bsub = start_sub(direct, "backend-sub", "moat/up", 1)
    try:
        mosquitto.wait_line(r"Sending SUBACK to dev1-sub", since=mark, timeout=10)
        mosquitto.wait_line(r"Sending SUBACK to backend-sub", since=mark, timeout=10)
        run([MOSQUITTO_PUB, *direct, "-t", "moat/down", "-m", "from the backend", "-q", "1",
             "-i", "backend-pub"], timeout=15)
        p = run([MOSQUITTO_PUB, *mqtt_tls_args(pki, pki.dns, port), "-t", "moat/down",
                 "-m", "from another device", "-q", "1", "-i", "dns-pub"],
                timeout=15, check=False)
        assert p.returncode == 0, p
        p = run([MOSQUITTO_PUB, *mqtt_tls_args(pki, pki.dev1, port), "-t", "moat/up",
                 "-m", "from dev-1", "-q", "1", "-i", "dev1-pub"], timeout=15, check=False)
        assert p.returncode == 0, p
    finally:
        rc_d, out_d, err_d = finish(dsub)
        rc_b, out_b, err_b = finish(bsub)
    assert rc_d == 0, f"device subscriber: rc={rc_d} {err_d}\n{mosquitto.diag()}"
    assert out_d.splitlines() == ["moat/down from the backend",
                                  "moat/down from another device"], out_d
    assert rc_b == 0, f"backend subscriber: rc={rc_b} {err_b}"
    assert out_b.splitlines() == ["moat/up from dev-1"], out_b
    # the broker saw moatd's connections for the three device clients
    seen = dict(mosquitto.connects(mark))
    for cid in ("dev1-sub", "dns-pub", "dev1-pub"):
        assert seen.get(cid, "").startswith("127.0.0.1:"), seen
    entries = m.wait_tcp_access(3, timeout=10, where=lambda e: e["listener"] == MQTT)
    assert sorted(e["device"] for e in entries) == ["dev-1", "dev-1", "dev-dns"], entries
    for e in entries:
        assert e["tenant"] == "mq" and e["origin"] == mosquitto.url, e
        assert e["bytes_up"] > 0 and e["bytes_down"] > 0, e
        assert e["end"] == "closed", e


@pytest.mark.parametrize("cert", [None, "revoked", "beta_dev", "expired"])
def test_mqtt_device_refused_never_reaches_the_broker(moatd, pki, mosquitto, cert):
    m = start_mqtt(moatd, pki, mosquitto)
    port = m.listener_port(MQTT)
    mark = mosquitto.mark()
    start = len(m.log_lines())
    p = run([MOSQUITTO_PUB, *mqtt_tls_args(pki, cert and getattr(pki, cert), port),
             "-t", "moat/up", "-m", "should not arrive", "-q", "1", "-i", "refused-pub"],
            timeout=15, check=False)
    assert p.returncode != 0, p
    m.wait_log(r"\[warn\] tls handshake refused:(?=.* listener=mqtt\b)", start=start)
    time.sleep(0.5)
    assert mosquitto.new_connections(mark) == [], mosquitto.lines(mark)


# ---------------------------------------------------------------------------------------------
# HAProxy reads the PROXY v2 header

def test_haproxy_sees_device_address_and_connection(moatd, pki, haproxy):
    m = start_tcp(moatd, haproxy.url, tenant_keys={"proxy_protocol": "v2"})
    mark = haproxy.mark()
    msg = b"through haproxy and back"
    with device(m, pki.dev1) as d:
        d.sendall(msg)
        assert d.recv_exact(len(msg)) == msg
        d.shutdown_write()
        assert d.read_to_end() == b""
    e = entry_for(m, d)
    h = haproxy.wait_entries(1, since=mark)[0]
    assert (h["ci"], h["cp"]) == ("127.0.0.1", str(d.local_port)), h
    assert (h["fi"], h["fp"]) == ("127.0.0.1", str(m.listener_port("tcp"))), h
    assert h["authority"] == "alpha.test", h
    assert h["uid"] == e["conn_id"], (h, e)
    assert h["bytes"] == str(len(msg)), h
    assert (e["bytes_up"], e["bytes_down"], e["end"]) == (len(msg), len(msg), "closed"), e


# ---------------------------------------------------------------------------------------------
# every TLV, strictly

def exchange(d, c, up=b"after the header"):
    d.sendall(up)
    assert c.recv_exact(len(up)) == up
    d.shutdown_write()
    assert c.read_to_end() == b""
    c.shutdown_write()
    assert d.read_to_end() == b""
    c.close()


def check_tls_header(h, d, m, pki, cert, device_id, tls_version):
    assert (h.command, h.family) == (pp2.CMD_PROXY, pp2.FAM_TCP4), h
    assert h.src == ("127.0.0.1", d.local_port), h
    assert h.dst == ("127.0.0.1", m.listener_port("tcp")), h
    assert h.ssl is not None, f"no PP2_TYPE_SSL TLV: {h}"
    assert h.ssl.verify == 0, h.ssl
    assert h.ssl.sub(pp2.SUBTYPE_SSL_VERSION) == tls_version, h.ssl
    assert h.ssl.sub(pp2.SUBTYPE_SSL_CN) == device_id, h.ssl
    assert h.ssl.sub(pp2.SUBTYPE_SSL_CIPHER) == d.cipher, (h.ssl, d.cipher)
    assert h.text(pp2.TYPE_MOAT_TENANT) == "alpha", h
    assert h.tlv(pp2.TYPE_MOAT_CERT_SHA256) == bytes.fromhex(cert.sha256), h
    assert h.text(pp2.TYPE_MOAT_CERT_SERIAL) == cert.serial, h
    assert h.text(pp2.TYPE_MOAT_DEVICE_ID) == device_id, h


@pytest.mark.parametrize("tls", VERSIONS)
def test_proxy_v2_header_tlvs(moatd, pki, tls):
    with TcpOrigin(pp2=True) as origin:
        m = start_tcp(moatd, origin.url, tenant_keys={"proxy_protocol": "v2"})
        with device(m, pki.dev1, tls=tls) as d:
            c = origin.accept()
            h = c.read_header()
            exchange(d, c)
        e = entry_for(m, d)
        check_tls_header(h, d, m, pki, pki.dev1, "dev-1", f"TLSv{tls}")
        # SSL and CERT_CONN (a certificate on this connection). CERT_SESS is left open: the
        # contract reads "SSL|CERT_CONN (|CERT_SESS when resumed)", while the PROXY protocol
        # specification also sets it on a full handshake (the session has a certificate too).
        both = pp2.CLIENT_SSL | pp2.CLIENT_CERT_CONN
        assert h.ssl.client & both == both, h.ssl
        assert h.text(pp2.TYPE_AUTHORITY) == "alpha.test", h
        assert h.text(pp2.TYPE_UNIQUE_ID) == e["conn_id"], (h, e)
        # the header is not payload
        assert (e["bytes_up"], e["bytes_down"]) == (16, 0), e


@pytest.mark.parametrize("tls", VERSIONS)
def test_proxy_v2_header_on_a_resumed_session(moatd, pki, tls):
    with TcpOrigin(pp2=True) as origin:
        m = start_tcp(moatd, origin.url, tenant_keys={"proxy_protocol": "v2"})
        with device(m, pki.dev1, tls=tls) as d1:
            c = origin.accept()
            c.read_header()
            d1.sendall(b"x")
            assert c.recv_exact(1) == b"x"
            c.sendall(b"y")
            assert d1.recv_exact(1) == b"y"  # (TLS 1.3 tickets come with it)
            exchange(d1, c)
        with device(m, pki.dev1, ctx=d1.ctx, session=d1.session) as d2:
            assert d2.session_reused
            c = origin.accept()
            h = c.read_header()
            exchange(d2, c)
        check_tls_header(h, d2, m, pki, pki.dev1, "dev-1", f"TLSv{tls}")
        assert h.ssl.client & pp2.CLIENT_SSL and h.ssl.client & pp2.CLIENT_CERT_SESS, \
            f"a resumed session must set PP2_CLIENT_CERT_SESS: {h.ssl}"
        assert entry_for(m, d2)["resumed"] is True


def test_proxy_v2_device_id_from_san_and_no_sni(moatd, pki):
    """SSL_CN and 0xE3 carry the device id (here the SAN URI); no SNI, no AUTHORITY TLV."""
    with TcpOrigin(pp2=True) as origin:
        m = start_tcp(moatd, origin.url, listener={"default_tenant": "alpha"},
                      tenant_keys={"proxy_protocol": "v2", "device_id": "san-uri"})
        with device(m, pki.dev1, server_hostname=None) as d:
            c = origin.accept()
            h = c.read_header()
            exchange(d, c)
        check_tls_header(h, d, m, pki, pki.dev1, "urn:dev:1", "TLSv1.3")
        assert h.tlv(pp2.TYPE_AUTHORITY) is None, f"AUTHORITY without SNI: {h}"
        assert entry_for(m, d)["device"] == "urn:dev:1"


def test_proxy_v2_over_ipv6(moatd, pki):
    with TcpOrigin(pp2=True) as origin:
        m = start_tcp(moatd, origin.url, tenant_keys={"proxy_protocol": "v2"},
                      bind_host="::1")
        with device(m, pki.dev1) as d:
            c = origin.accept()
            h = c.read_header()
            exchange(d, c)
        assert h.family == pp2.FAM_TCP6, h
        assert h.src == ("::1", d.local_port) and h.dst == ("::1", m.listener_port("tcp")), h
        uid = h.text(pp2.TYPE_UNIQUE_ID)
        e = m.wait_tcp_access(1, where=lambda x: x["conn_id"] == uid)[0]
        assert (e["bytes_up"], e["end"]) == (16, "closed"), e


def test_access_log_remote_ipv6_is_bracketed(moatd, pki, tcp_echo):
    """"remote" of an IPv6 device is [addr]:port (as bind takes it, and Forwarded writes
    for="[::1]"): a bare "::1:52464" cannot be split into address and port."""
    m = start_tcp(moatd, tcp_echo.url, bind_host="::1")
    with device(m, pki.dev1) as d:
        d.sendall(b"v6")
        assert d.recv_exact(2) == b"v6"
        d.shutdown_write()
        assert d.read_to_end() == b""
    e = m.wait_tcp_access(1)[0]
    assert e["remote"] == f"[::1]:{d.local_port}", e


def test_no_proxy_header_unless_asked(moatd, pki):
    with TcpOrigin() as origin:
        m = start_tcp(moatd, origin.url)
        with device(m, pki.dev1) as d:
            c = origin.accept()
            d.sendall(b"first bytes")
            assert c.recv_exact(11) == b"first bytes", bytes(c.first_bytes[:64])
            exchange(d, c, b"")


# ---------------------------------------------------------------------------------------------
# tls:// origins

def tls_origin_ctx(cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def test_tls_origin_verified_with_origin_ca(moatd, pki):
    with TcpOrigin(handler=echo_handler, ssl_ctx=tls_origin_ctx(pki.local_server)) as origin:
        assert origin.url.startswith("tls://")
        m = start_tcp(moatd, origin.url, tenant_keys={"origin_ca": str(pki.server_ca.cert)})
        data = b"encrypted both hops " * 1000
        with device(m, pki.dev1) as d:
            d.sendall(data)
            assert d.recv_exact(len(data), timeout=10) == data
            d.shutdown_write()
            assert d.read_to_end() == b""
        assert origin.tls_errors == [] and len(origin.conns) == 1
        assert isinstance(origin.conns[0].sock, ssl.SSLSocket)
        e = entry_for(m, d)
        assert (e["origin"], e["end"], e["bytes_up"], e["bytes_down"]) == \
            (origin.url, "closed", len(data), len(data)), e


@pytest.mark.parametrize("case", ["wrong-origin-ca", "name-mismatch"])
def test_tls_origin_failure_closes_the_device(moatd, pki, case):
    # wrong-origin-ca: the origin's certificate is not signed by origin_ca (the contract);
    # name-mismatch: signed, but for alpha.test, not 127.0.0.1 (docs/tcp.md: "and name the
    # origin's host")
    cert, ca = ((pki.local_server, pki.alpha_ca.cert) if case == "wrong-origin-ca"
                else (pki.alpha_server, pki.server_ca.cert))
    with TcpOrigin(handler=echo_handler, ssl_ctx=tls_origin_ctx(cert)) as origin:
        m = start_tcp(moatd, origin.url, tenant_keys={"origin_ca": str(ca)})
        with device(m, pki.dev1) as d:
            try:
                d.sendall(b"secret for a verified origin only")
            except OSError:
                pass
            assert d.ends_within(3), "the device connection stayed open"
            assert not d.buf, f"data came back from an unverified origin: {bytes(d.buf)!r}"
        e = entry_for(m, d)
        assert e["end"] == "origin_tls_failed" and e["bytes_down"] == 0, e
        time.sleep(0.2)
        assert not origin.conns, "the unverified origin completed a TLS handshake"
        assert origin.tls_errors, "the origin saw no TLS attempt at all"


def test_optional_mtls_without_certificate(moatd, pki):
    """mtls = optional: a device without a certificate gets its stream; the header says TLS
    without a certificate (no CERT bits, verify not 0) and carries no certificate facts."""
    with TcpOrigin(pp2=True) as origin:
        m = start_tcp(moatd, origin.url,
                      tenant_keys={"proxy_protocol": "v2", "mtls": "optional"})
        with device(m, None) as d:
            c = origin.accept()
            h = c.read_header()
            exchange(d, c)
        assert h.ssl is not None, h
        assert h.ssl.client & pp2.CLIENT_SSL, h.ssl
        assert not h.ssl.client & (pp2.CLIENT_CERT_CONN | pp2.CLIENT_CERT_SESS), h.ssl
        assert h.ssl.verify != 0, h.ssl
        for t in (pp2.TYPE_MOAT_CERT_SHA256, pp2.TYPE_MOAT_CERT_SERIAL):
            assert h.tlv(t) is None, f"TLV 0x{t:02x} without a certificate: {h}"
        assert not h.ssl.subs.get(pp2.SUBTYPE_SSL_CN), h.ssl
        assert h.text(pp2.TYPE_MOAT_TENANT) == "alpha", h
        e = entry_for(m, d)
        assert not e["device"] and e["end"] == "closed", e


def test_no_alpn_is_selected(moatd, pki, tcp_echo):
    """A TCP listener selects no ALPN protocol, whatever the device offers."""
    m = start_tcp(moatd, tcp_echo.url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.server_ca.cert))
    ctx.load_cert_chain(str(pki.dev1.cert), str(pki.dev1.key))
    ctx.set_alpn_protocols(["mqtt", "x-vendor", "http/1.1"])
    with device(m, pki.dev1, ctx=ctx) as d:
        assert d.obj.selected_alpn_protocol() is None, d.obj.selected_alpn_protocol()
        d.sendall(b"alpn?")
        assert d.recv_exact(5) == b"alpn?"
        d.shutdown_write()
        assert d.read_to_end() == b""
