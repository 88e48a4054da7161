"""The TCP-mode fixtures themselves, without moatd: the PROXY v2 parser (and HAProxy agreeing
with it), mosquitto, the python origins and devices (half-close, resets, duplex streaming over
TLS), the full accept queue that makes a connect hang, and the many-connections client."""

import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time

import pytest

from moattest import pp2
from moattest.tcp import (AsyncEchoOrigin, FullAcceptQueue, PlainDevice, TcpOrigin, TlsDevice,
                          echo_handler, random_chunks)
from moattest.thirdparty import MOSQUITTO_PUB, MOSQUITTO_SUB
from moattest.util import run

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------
# PROXY v2

def sample_header(**kw):
    return pp2.encode(("127.0.0.1", 40001), ("127.0.0.1", 8883),
                      [(pp2.TYPE_AUTHORITY, b"alpha.test"),
                       (pp2.TYPE_UNIQUE_ID, b"00112233aabbccdd"),
                       (pp2.TYPE_MOAT_TENANT, b"alpha"),
                       (pp2.TYPE_MOAT_CERT_SHA256, bytes(range(32))),
                       (pp2.TYPE_MOAT_CERT_SERIAL, b"0A1B"),
                       (pp2.TYPE_MOAT_DEVICE_ID, b"dev-1")],
                      ssl=(pp2.CLIENT_SSL | pp2.CLIENT_CERT_CONN, 0,
                           [(pp2.SUBTYPE_SSL_VERSION, b"TLSv1.3"),
                            (pp2.SUBTYPE_SSL_CN, b"dev-1"),
                            (pp2.SUBTYPE_SSL_CIPHER, b"TLS_AES_128_GCM_SHA256")]), **kw)


def test_pp2_roundtrip():
    raw = sample_header(crc=True)
    h, n = pp2.parse(raw + b"payload")
    assert n == len(raw)
    assert (h.command, h.family, h.src, h.dst) == (pp2.CMD_PROXY, pp2.FAM_TCP4,
                                                   ("127.0.0.1", 40001), ("127.0.0.1", 8883))
    assert h.text(pp2.TYPE_AUTHORITY) == "alpha.test"
    assert h.ssl.client == 3 and h.ssl.verify == 0
    assert h.ssl.sub(pp2.SUBTYPE_SSL_CN) == "dev-1"
    assert h.tlv(pp2.TYPE_MOAT_CERT_SHA256) == bytes(range(32))
    h6, _ = pp2.parse(pp2.encode(("::1", 1), ("::1", 2)))
    assert h6.family == pp2.FAM_TCP6 and h6.src == ("::1", 1)
    for cut in range(len(raw)):
        with pytest.raises(pp2.Incomplete):
            pp2.parse(raw[:cut])


def _mutate(raw, i, value):
    b = bytearray(raw)
    b[i] = value
    return bytes(b)


@pytest.mark.parametrize("name", ["signature", "version1", "command", "family-udp",
                                  "stray-byte", "tlv-overrun", "duplicate-tlv", "bad-crc",
                                  "ssl-too-short", "ssl-sub-overrun", "proxy-unspec"])
def test_pp2_parser_is_strict(name):
    raw = sample_header()
    if name == "signature":
        bad = b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"
    elif name == "version1":
        bad = _mutate(raw, 12, 0x11)
    elif name == "command":
        bad = _mutate(raw, 12, 0x22)
    elif name == "family-udp":
        bad = _mutate(raw, 13, 0x12)
    elif name == "stray-byte":
        body = raw[16:] + b"\x04"
        bad = raw[:14] + len(body).to_bytes(2, "big") + body
    elif name == "tlv-overrun":
        body = raw[16:] + b"\x04\x00\x09ab"
        bad = raw[:14] + len(body).to_bytes(2, "big") + body
    elif name == "duplicate-tlv":
        body = raw[16:] + b"\x02\x00\x01x"
        bad = raw[:14] + len(body).to_bytes(2, "big") + body
    elif name == "bad-crc":
        good = sample_header(crc=True)
        bad = good[:-1] + bytes([good[-1] ^ 1])
    elif name == "ssl-too-short":
        bad = pp2.encode(("127.0.0.1", 1), ("127.0.0.1", 2), [(pp2.TYPE_SSL, b"\x01\x00")])
    elif name == "ssl-sub-overrun":
        bad = pp2.encode(("127.0.0.1", 1), ("127.0.0.1", 2),
                         [(pp2.TYPE_SSL, b"\x01\x00\x00\x00\x00\x22\x00\x09dev")])
    elif name == "proxy-unspec":
        bad = pp2.SIGNATURE + b"\x21\x00\x00\x00"
    with pytest.raises(pp2.PP2Error):
        pp2.parse(bad)


def test_haproxy_reads_our_header(haproxy, tcp_echo):
    """HAProxy agrees with pp2.py about what a header says (and checks its CRC32C)."""
    mark = haproxy.mark()
    raw = pp2.encode(("127.0.0.1", 40123), ("127.0.0.1", 8884),
                     [(pp2.TYPE_AUTHORITY, b"alpha.test"),
                      (pp2.TYPE_UNIQUE_ID, b"c0ffee0123456789")],
                     ssl=(3, 0, [(pp2.SUBTYPE_SSL_CN, b"dev-1")]), crc=True)
    with socket.create_connection(("127.0.0.1", haproxy.port), timeout=5) as s:
        s.sendall(raw + b"ping")
        assert s.recv(100) == b"ping"
    e = haproxy.wait_entries(1, since=mark)[0]
    assert (e["ci"], e["cp"], e["fi"], e["fp"]) == ("127.0.0.1", "40123", "127.0.0.1", "8884")
    assert e["authority"] == "alpha.test" and e["uid"] == "c0ffee0123456789", e
    # a corrupted checksum: HAProxy drops the connection, the backend sees nothing
    conns = len(tcp_echo.conns)
    bad = raw[:-1] + bytes([raw[-1] ^ 0xFF])
    with socket.create_connection(("127.0.0.1", haproxy.port), timeout=5) as s:
        s.sendall(bad + b"ping")
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
    assert got == b""
    time.sleep(0.3)
    assert len(tcp_echo.conns) == conns


# ---------------------------------------------------------------------------------------------
# mosquitto

def test_mosquitto_pub_sub_direct(mosquitto):
    mark = mosquitto.mark()
    base = ["-h", "127.0.0.1", "-p", str(mosquitto.port)]
    sub = subprocess.Popen([MOSQUITTO_SUB, *base, "-t", "fixture/t", "-C", "1", "-W", "10",
                            "-i", "fixture-sub"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        mosquitto.wait_line(r"Sending SUBACK to fixture-sub", since=mark)
        run([MOSQUITTO_PUB, *base, "-t", "fixture/t", "-m", "hi", "-i", "fixture-pub"],
            timeout=10)
        out, err = sub.communicate(timeout=10)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert out.strip() == b"hi"
    ids = [c for c, _ in mosquitto.connects(mark)]
    assert ids == ["fixture-sub", "fixture-pub"], ids


# ---------------------------------------------------------------------------------------------
# python origins and devices

def test_full_accept_queue_makes_connect_hang():
    q = FullAcceptQueue()
    try:
        t0 = time.monotonic()
        assert q.connect_hangs(0.7)
        assert time.monotonic() - t0 >= 0.6
    finally:
        q.close()


def test_resets_are_seen_as_resets():
    with TcpOrigin() as origin:
        d = PlainDevice(origin.port)
        c = origin.accept()
        d.sendall(b"x")
        assert c.recv_exact(1) == b"x"
        c.reset()
        assert d.ends_within(2) and d.end == "reset", d.end
        d.close()
        d = PlainDevice(origin.port)
        c = origin.accept()
        d.sendall(b"y")
        assert c.recv_exact(1) == b"y"
        d.reset()
        assert c.ends_within(2) and c.end == "reset", c.end


def tls_server_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.local_server.cert), str(pki.local_server.key))
    return ctx


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_tls_device_half_close_both_ways(pki, tls):
    with TcpOrigin(ssl_ctx=tls_server_ctx(pki)) as origin:
        # device first: close_notify + FIN, then still reads the origin's late reply
        d = TlsDevice(origin.port, pki=pki, cert=None, server_hostname="localhost", tls=tls)
        c = origin.accept()
        d.sendall(b"request")
        d.shutdown_write()
        assert c.read_to_end() == b"request"
        c.sendall(b"late reply")
        c.shutdown_write()
        assert d.read_to_end() == b"late reply"
        assert d.end == "close_notify"
        d.close()
        # origin first: the device sees close_notify and can still send
        d = TlsDevice(origin.port, pki=pki, cert=None, server_hostname="localhost", tls=tls)
        c = origin.accept()
        c.sendall(b"bye")
        c.shutdown_write()
        assert d.read_to_end() == b"bye" and d.end == "close_notify"
        d.sendall(b"after your close")
        d.shutdown_write()
        assert c.read_to_end() == b"after your close"
        d.close()
        # a bare FIN without close_notify is told apart
        d = TlsDevice(origin.port, pki=pki, cert=None, server_hostname="localhost", tls=tls)
        c = origin.accept()
        c.sendall(b"cut")
        c.sock.shutdown(socket.SHUT_WR)
        assert d.read_to_end() == b"cut" and d.end == "eof", d.end
        d.close()


def test_tls_device_pump_full_duplex(pki):
    size = 8 * 1024 * 1024
    with TcpOrigin(handler=echo_handler, ssl_ctx=tls_server_ctx(pki)) as origin:
        d = TlsDevice(origin.port, pki=pki, cert=None, server_hostname="localhost", timeout=10)
        sent, got = hashlib.sha256(), hashlib.sha256()
        n = [0]

        def sink(b):
            got.update(b)
            n[0] += len(b)
        d.pump(random_chunks(size, h=sent), sink)
        d.close()
    assert n[0] == size and got.hexdigest() == sent.hexdigest()


def test_load_client_and_async_echo(pki):
    """tcpload.py against a python TLS origin (no moatd): ready, hold, close."""
    relay = AsyncEchoOrigin()
    with TcpOrigin(handler=echo_handler, ssl_ctx=tls_server_ctx(pki)) as origin:
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "moattest", "tcpload.py"),
                              "--port", str(origin.port), "--conns", "20", "--size", "5000",
                              "--ca", str(pki.server_ca.cert), "--cert", str(pki.dev1.cert),
                              "--key", str(pki.dev1.key), "--sni", "localhost",
                              "--timeout", "10"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = json.loads(p.stdout.readline())
            assert ready["ready"] == 20, ready
            p.stdin.write("go\n")
            p.stdin.flush()
            done = json.loads(p.stdout.readline())
            assert done["done"] == 20 and done["nfailed"] == 0, done
            assert p.wait(timeout=10) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    # and the asyncio echo origin echoes
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as s:
        s.sendall(b"abc")
        assert s.recv(10) == b"abc"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
    relay.close()
    assert relay.max_open >= 1 and not relay.errors


def test_pattern_is_consistent_across_slicings():
    from moattest.tcp import MB, Pattern
    p = Pattern(b"self-test")
    whole = b"".join(p.at(o, 250000) for o in range(0, 3 * MB, 250000))
    again = b"".join(p.at(o, 333331) for o in range(0, 3 * MB, 333331))
    n = min(len(whole), len(again))
    assert n > 2 * MB and whole[:n] == again[:n]
    assert whole[: 1000] != whole[p.P - 1: p.P + 999] and whole[:1000] == whole[p.P:p.P + 1000]
