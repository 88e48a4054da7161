"""HTTP proxying: identity headers and what a client cannot spoof, connection reuse, message
framing (HEAD, 204, 304, 100-continue, pipelining, chunked and close-delimited responses),
errors from moatd itself, and the access log."""

import json
import re
import socket
import time

import pytest

from moattest.client import ConnectionClosed, HTTPConn, curl, s_client
from moattest.origin import MALFORMED_MARKER
from moattest.util import free_port

ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def assert_error(resp, status, code):
    """A moatd-made error: the status, and the contract's JSON body."""
    assert resp.status == status, resp
    body = json.loads(resp.body)
    assert body["error"] == code, body
    assert isinstance(body.get("detail"), str), body
    assert re.fullmatch(r"[0-9a-f]{16}", body.get("request_id", "")), body
    return body


# ---------------------------------------------------------------------------------------------
# identity headers

def test_identity_headers_reach_the_origin(moat, origin, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/identity", headers=["Connection: close"])
        r = c.response()
    assert r.status == 200, r
    e = origin.one()
    assert e["tenant"] == "alpha"
    assert e["device"] == "dev-1"
    assert e["cert_sha256"] == pki.dev1.sha256
    assert e["cert_serial"] == pki.dev1.serial
    assert e["cert_verified"] == "SUCCESS"
    assert e["forwarded"] == "for=127.0.0.1;proto=https"
    assert e["x_forwarded_for"] == ""
    assert re.fullmatch(r"[0-9a-f]{16}", e["request_id"])


def test_identity_headers_reach_the_origin_exactly_once(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/headers", headers=["Connection: close"])
        assert c.response().status == 200
    req = pyorigin.wait_for(1)[0]
    for name in ("Moat-Tenant", "Moat-Device", "Moat-Cert-Sha256", "Moat-Cert-Serial",
                 "Moat-Cert-Verified", "Moat-Request-Id", "Forwarded"):
        assert len(req.header_all(name)) == 1, (name, req.headers)


SPOOFED = [
    "Moat-Device: evil-device",
    "Moat-Tenant: beta",
    "Moat-Cert-Sha256: " + "ab" * 32,
    "Moat-Cert-Serial: 0BAD",
    "Moat-Cert-Verified: SUCCESS-SPOOFED",
    "Moat-Request-Id: 0123456789abcdef",
    "Forwarded: for=6.6.6.6;proto=http",
    "X-Forwarded-For: 6.6.6.6",
    "X-Forwarded-Proto: http",
    "X-Forwarded-Host: evil.test",
    "X-Real-IP: 6.6.6.6",
    "X-Client-Cert: forged-6.6.6.6",
    "moat-device: evil-lowercase",
    "MOAT-TENANT: BETA-UPPER",
]


def test_spoofed_identity_headers_never_reach_the_origin(moat, origin, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/spoof", headers=SPOOFED + ["Connection: close"])
        r = c.response()
    assert r.status == 200, r
    e = origin.one()
    assert e["device"] == "dev-1"
    assert e["tenant"] == "alpha"
    assert e["cert_sha256"] == pki.dev1.sha256
    assert e["cert_serial"] == pki.dev1.serial
    assert e["cert_verified"] == "SUCCESS"
    assert e["request_id"] != "0123456789abcdef"
    assert e["forwarded"] == "for=127.0.0.1;proto=https"
    assert e["x_forwarded_for"] == ""
    assert e["x_forwarded_proto"] == ""
    assert e["x_forwarded_host"] == ""
    assert e["x_real_ip"] == ""
    assert e["x_client_cert"] == ""


def test_spoofed_headers_are_removed_not_merged(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/headers", headers=SPOOFED + ["Connection: close"])
        assert c.response().status == 200
    req = pyorigin.wait_for(1)[0]
    raw = req.raw_head.lower()
    for needle in (b"evil", b"6.6.6.6", b"spoofed", b"0bad", b"beta", b"x-forwarded",
                   b"x-real-ip"):
        assert needle not in raw, (needle, req.raw_head)
    assert req.header_all("Moat-Device") == ["dev-1"]
    assert req.header_all("Forwarded") == ["for=127.0.0.1;proto=https"]


def test_hop_by_hop_headers_are_not_forwarded(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/headers", headers=["Connection: X-Secret, keep-alive",
                                              "X-Secret: hop", "Keep-Alive: timeout=5",
                                              "Proxy-Connection: keep-alive",
                                              "TE: trailers", "Trailer: X-T",
                                              "Upgrade: websocket",
                                              "X-End-To-End: kept"])
        assert c.response().status == 200
    req = pyorigin.wait_for(1)[0]
    names = {k.lower() for k, _ in req.headers}
    for hop in ("x-secret", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
        assert hop not in names, (hop, req.headers)
    assert req.header("X-End-To-End") == "kept"


def test_ipv6_client_is_quoted_in_forwarded(moatd, origin, pki):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("this host has no IPv6 loopback")
    moat = moatd(bind_host="::1")
    r = curl(moat, "/v6", cert=pki.dev1)
    assert r.status == 200, r
    assert origin.one()["forwarded"] == 'for="[::1]";proto=https'


# ---------------------------------------------------------------------------------------------
# connections

def test_curl_reuses_the_connection_for_two_requests(moat, origin, pki):
    r = curl(moat, urls=["/first", "/second"], cert=pki.dev1)
    assert [t["http_code"] for t in r.transfers] == [200, 200], r
    assert [t["num_connects"] for t in r.transfers] == [1, 0], r.transfers
    entries = origin.wait_for(2)
    assert [e["uri"] for e in entries] == ["/first", "/second"]
    log = moat.wait_access(2)
    assert len({a["remote"] for a in log}) == 1, "both requests came on one client connection"


def test_keep_alive_on_a_raw_socket(moat, origin, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        for i in range(5):
            c.request("GET", f"/ka/{i}")
            r = c.response()
            assert r.status == 200, r
            assert (r.header("Connection") or "").lower() != "close"
            assert json.loads(r.body)["uri"] == f"/ka/{i}"
    assert [e["uri"] for e in origin.wait_for(5)] == [f"/ka/{i}" for i in range(5)]


def test_origin_connections_are_reused(moatd, origin, pki):
    """origin_keepalive: two client connections in a row share one origin connection."""
    moat = moatd(moat={"workers": "1"})
    for path in ("/pool-1", "/pool-2"):
        assert curl(moat, path, cert=pki.dev1).status == 200
    a, b = origin.wait_for(2)
    assert a["connection"] == b["connection"], (a, b)
    assert int(b["connection_requests"]) == int(a["connection_requests"]) + 1


def test_idle_timeout_closes_a_keep_alive_connection(moatd, pki):
    moat = moatd(moat={"idle_timeout": "1s"})
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/idle")
        assert c.response().status == 200
        t0 = time.monotonic()
        assert c.closed_within(4), "idle keep-alive connection not closed"
        elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed <= 3.0, elapsed


def test_connection_close_is_honoured(moat, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/bye", headers=["Connection: close"])
        r = c.response()
        assert r.status == 200
        assert c.closed_within(3)


def test_http10_client_gets_a_close_delimited_exchange(moat, origin, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: alpha.test\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert json.loads(r.body)["uri"] == "/ten"
        assert c.closed_within(3)


# ---------------------------------------------------------------------------------------------
# framing

def test_head_response_has_no_body(moat, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("HEAD", "/head")
        r = c.response(head_request=True)
        assert r.status == 200
        assert int(r.header("Content-Length")) > 0
        # framing intact: the next response on the connection is parsed from its first byte
        c.request("GET", "/after-head")
        r2 = c.response()
        assert r2.status == 200 and json.loads(r2.body)["uri"] == "/after-head", r2


def test_head_of_big_static_file(moat, pki, nginx_server):
    (nginx_server.www / "head.bin").write_bytes(b"z" * 100000)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("HEAD", "/static/head.bin")
        r = c.response(head_request=True)
        assert r.status == 200 and r.header("Content-Length") == "100000"
        c.request("GET", "/static/small.txt")
        assert c.response().body == b"small static file\n"


def test_204_and_304_have_no_body(moat, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/204")
        assert c.response().status == 204
        c.request("GET", "/static/small.txt")
        r = c.response()
        etag = r.header("ETag")
        assert r.status == 200 and etag
        c.request("GET", "/static/small.txt", headers=[f"If-None-Match: {etag}"])
        assert c.response().status == 304
        c.request("GET", "/after-304")
        r = c.response()
        assert r.status == 200 and json.loads(r.body)["uri"] == "/after-304", r
        assert not c.buf, f"stray bytes after the responses: {bytes(c.buf)!r}"


def test_chunked_response_is_relayed(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/chunked")
        r = c.response()
        assert r.status == 200
        assert r.body == b"first part, second part, last part\n"
        c.request("GET", "/after-chunked")
        assert c.response().body == b"py origin ok\n"


def test_close_delimited_response_is_relayed_whole(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/until-close")
        r = c.response()
        assert r.status == 200
        assert r.body == b"x" * 10000 + b"end\n"


def test_expect_100_continue_with_curl(moat, origin, pki, tmp_path):
    f = tmp_path / "post.bin"
    f.write_bytes(b"p" * (2 * 1024 * 1024))
    t0 = time.monotonic()
    r = curl(moat, "/sink", cert=pki.dev1, data_file=f, extra=["-v"])
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json()["length"] == 2 * 1024 * 1024
    assert "Expect: 100-continue" in r.stderr
    assert re.search(r"< HTTP/1\.1 100", r.stderr), r.stderr[-3000:]
    # curl waits 1 s for the 100 before sending anyway; moatd must not make it wait
    assert elapsed < 1.0, elapsed


def test_expect_100_continue_on_a_raw_socket(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    body = b"b" * 5000
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(b"POST /sink HTTP/1.1\r\nHost: alpha.test\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5000\r\n\r\n")
        interim = c.response(interim=True)
        assert interim.status == 100, interim
        c.send(body)
        r = c.response()
        assert r.status == 200
        assert json.loads(r.body)["length"] == 5000


def test_pipelined_requests_are_answered_in_order(moat, origin, pki):
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(b"".join(f"GET /pipe/{i} HTTP/1.1\r\nHost: alpha.test\r\n\r\n".encode()
                        for i in range(3)))
        uris = [json.loads(c.response().body)["uri"] for _ in range(3)]
    assert uris == ["/pipe/0", "/pipe/1", "/pipe/2"]
    assert [e["uri"] for e in origin.wait_for(3)] == uris


def test_pipelined_mix_of_methods_and_bodies(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(b"POST /sink HTTP/1.1\r\nHost: alpha.test\r\nContent-Length: 3\r\n\r\nabc"
               b"HEAD /x HTTP/1.1\r\nHost: alpha.test\r\n\r\n"
               b"POST /sink HTTP/1.1\r\nHost: alpha.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\nde\r\n0\r\n\r\n"
               b"GET /last HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        assert json.loads(c.response().body)["length"] == 3
        assert c.response(head_request=True).status == 200
        assert json.loads(c.response().body)["length"] == 2
        assert c.response().body == b"py origin ok\n"
    assert [r.path for r in pyorigin.wait_for(4)] == ["/sink", "/x", "/sink", "/last"]


# ---------------------------------------------------------------------------------------------
# origin failures

def test_origin_down_is_502_json(moatd, pki):
    moat = moatd(origin=f"http://127.0.0.1:{free_port()}")
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/down")
        r = c.response()
    assert_error(r, 502, "origin_unreachable")
    assert "json" in (r.header("Content-Type") or ""), r


def test_slow_origin_is_504_json(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url, moat={"origin_response_timeout": "1s"})
    with HTTPConn(moat, cert=pki.dev1, timeout=8) as c:
        t0 = time.monotonic()
        c.request("GET", "/slow?delay=4")
        r = c.response()
        elapsed = time.monotonic() - t0
    assert_error(r, 504, "origin_timeout")
    assert 0.8 <= elapsed <= 2.5, elapsed


@pytest.mark.parametrize("kind", ["status", "garbage", "clte", "space", "twocl", "lf"])
def test_malformed_origin_response_is_502_and_not_passed_on(moatd, pyorigin, pki, kind):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", f"/malformed?kind={kind}")
        r = c.response()
        rest = bytes(c.buf)
    assert_error(r, 502, "bad_origin_response")
    assert MALFORMED_MARKER[:5] not in r.raw_head + r.body + rest


def test_origin_reset_is_502(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/reset")
        r = c.response()
    assert r.status == 502, r
    json.loads(r.body)


def test_origin_connect_timeout_is_504(moatd, pki):
    """An origin whose accept queue is full never completes the TCP handshake."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        # fill the accept queue so that further SYNs are dropped
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        moat = moatd(origin=f"http://127.0.0.1:{port}", moat={"origin_connect_timeout": "1s"})
        with HTTPConn(moat, cert=pki.dev1, timeout=8) as c:
            t0 = time.monotonic()
            c.request("GET", "/blackhole")
            r = c.response()
            elapsed = time.monotonic() - t0
    finally:
        for f in fillers:
            f.close()
        lsock.close()
    assert r.status in (502, 504), r
    assert json.loads(r.body)["error"] in ("origin_timeout", "origin_unreachable"), r
    assert 0.8 <= elapsed <= 2.5, f"answered after {elapsed:.2f}s, origin_connect_timeout=1s"


def test_https_origin_verified_with_origin_ca(moatd, origin, pki, nginx_server):
    moat = moatd(origin=f"https://127.0.0.1:{nginx_server.tls_port}",
                 tenants={"alpha": {"origin_ca": str(pki.server_ca.cert)}})
    r = curl(moat, "/over-tls", cert=pki.dev1)
    assert r.status == 200, r
    e = origin.one()
    assert (e["scheme"], e["uri"], e["device"]) == ("https", "/over-tls", "dev-1")


def test_https_origin_with_untrusted_certificate_is_502(moatd, origin, pki, nginx_server):
    # the origin's certificate is not issued by the configured origin_ca
    moat = moatd(origin=f"https://127.0.0.1:{nginx_server.tls_port}",
                 tenants={"alpha": {"origin_ca": str(pki.alpha_ca.cert)}})
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/untrusted-origin")
        r = c.response()
    assert r.status == 502, r
    json.loads(r.body)
    origin.assert_quiet()


def test_client_survives_an_origin_error(moatd, pyorigin, pki):
    """After a 502 the device can go on (on this connection or a new one)."""
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/close")
        assert c.response().status == 502
        try:
            c.request("GET", "/fine")
            r = c.response()
        except (ConnectionClosed, OSError):
            with HTTPConn(moat, cert=pki.dev1) as c2:
                c2.request("GET", "/fine")
                r = c2.response()
    assert r.status == 200 and r.body == b"py origin ok\n"


# ---------------------------------------------------------------------------------------------
# access log

def test_access_log_line(moat, origin, pki):
    with HTTPConn(moat, cert=pki.dev1, tls="1.3") as c:
        c.request("POST", "/logged?q=1", body=b"0123456789")
        r = c.response()
        local = c.sock.getsockname()
    assert r.status == 200
    e = origin.one()
    a = moat.wait_access(1)[-1]
    assert re.fullmatch(ISO_MS, a["time"]), a
    assert a["request_id"] == e["request_id"]
    assert a["listener"] == "devices"
    assert a["remote"] == f"127.0.0.1:{local[1]}"
    assert a["tenant"] == "alpha"
    assert a["device"] == "dev-1"
    assert a["method"] == "POST"
    assert a["path"] in ("/logged", "/logged?q=1")
    assert a["status"] == 200
    assert isinstance(a["bytes_in"], int) and a["bytes_in"] >= 10
    assert isinstance(a["bytes_out"], int) and a["bytes_out"] >= len(r.body)
    assert isinstance(a["duration_ms"], (int, float)) and a["duration_ms"] >= 0
    assert isinstance(a["origin_ms"], (int, float)) and 0 <= a["origin_ms"] <= a["duration_ms"]
    assert a["tls"] == "TLSv1.3"
    assert a["resumed"] is False


def test_access_log_records_moatd_errors(moatd, pki):
    moat = moatd(origin=f"http://127.0.0.1:{free_port()}")
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/nowhere")
        r = c.response()
    body = assert_error(r, 502, "origin_unreachable")
    a = moat.wait_access(1)[-1]
    assert a["status"] == 502
    assert a["request_id"] == body["request_id"]
    assert a["path"] == "/nowhere"


def test_s_client_sees_a_plain_http11_exchange(moat, pki):
    """Smoke test with openssl s_client as the client, as device firmware debugging would."""
    p = s_client(moat, cert=pki.dev1)
    # s_client prints the session summary and the response on the same stream, sometimes
    # interleaved mid-line, so the status line is looked for anywhere
    assert re.search(r"HTTP/1\.1 200 OK\r?\n", p.stdout), p.stdout + p.stderr
