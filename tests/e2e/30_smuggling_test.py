"""Request smuggling and parser strictness over real TLS: every ambiguous or malformed request
is refused by moatd itself, with the contract's JSON error and `Connection: close`, the
connection ends, and the origin sees nothing. Then the size limits at their exact boundaries,
and clients that are too slow."""

import json
import time

import pytest

from moattest.client import HTTPConn

HOST = b"Host: alpha.test\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: alpha.test\r\n\r\n"

# name, request bytes, acceptable statuses
CASES = [
    ("cl-and-te", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, {400}),
    ("te-and-cl", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n"
     b"Content-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED, {400}),
    ("two-differing-cl", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n"
     b"Content-Length: 45\r\n\r\nhello" + SMUGGLED, {400}),
    ("cl-list-differing", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 5, 45\r\n\r\n"
     b"hello" + SMUGGLED, {400}),
    ("cl-plus-sign", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: +5\r\n\r\nhello", {400}),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n", {400}),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 0x5\r\n\r\nhello", {400}),
    ("cl-overflow", b"POST / HTTP/1.1\r\n" + HOST +
     b"Content-Length: 99999999999999999999999\r\n\r\n", {400}),
    ("te-gzip", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n" + SMUGGLED,
     {400, 501}),
    ("te-gzip-chunked", b"POST / HTTP/1.1\r\n" + HOST +
     b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-chunked-identity", b"POST / HTTP/1.1\r\n" + HOST +
     b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED, {400, 501}),
    ("te-twice", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-xchunked", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: xchunked\r\n\r\n"
     b"0\r\n\r\n", {400, 501}),
    ("te-in-http10", b"POST / HTTP/1.0\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n" + SMUGGLED, {400}),
    ("te-space-before-colon", b"POST / HTTP/1.1\r\n" + HOST +
     b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, {400}),
    ("cl-space-before-colon", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length : 5\r\n\r\n"
     b"hello", {400}),
    ("host-space-before-colon", b"GET / HTTP/1.1\r\nHost : alpha.test\r\n\r\n", {400}),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + HOST + b"X-Folded: a\r\n b\r\n\r\n", {400}),
    ("obs-fold-te", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding:\r\n chunked\r\n\r\n"
     b"0\r\n\r\n", {400}),
    ("bare-lf-header", b"GET / HTTP/1.1\r\n" + b"Host: alpha.test\nX-A: b\r\n\r\n", {400}),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: alpha.test\r\n\r\n", {400}),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: alpha.test\n\n", {400}),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: alpha.test\rX-A: b\r\n\r\n", {400}),
    ("bad-name-at", b"GET / HTTP/1.1\r\n" + HOST + b"X@Bad: 1\r\n\r\n", {400}),
    ("bad-name-space", b"GET / HTTP/1.1\r\n" + HOST + b"X Bad: 1\r\n\r\n", {400}),
    ("bad-name-empty", b"GET / HTTP/1.1\r\n" + HOST + b": 1\r\n\r\n", {400}),
    ("bad-name-nonascii", b"GET / HTTP/1.1\r\n" + HOST + b"X-\xc3\xa9: 1\r\n\r\n", {400}),
    ("no-colon", b"GET / HTTP/1.1\r\n" + HOST + b"X-No-Colon\r\n\r\n", {400}),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n", {400}),
    ("cr-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n", {400}),
    ("del-in-value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x7fb\r\n\r\n", {400}),
    ("missing-host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("two-hosts", b"GET / HTTP/1.1\r\n" + HOST + b"Host: beta.test\r\n\r\n", {400}),
    ("double-space-request-line", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", {400}),
    ("extra-request-line-token", b"GET / HTTP/1.1 x\r\n" + HOST + b"\r\n", {400}),
    ("bad-version", b"GET / HTTP/1.x\r\n" + HOST + b"\r\n", {400, 505}),
    ("lowercase-version", b"GET / http/1.1\r\n" + HOST + b"\r\n", {400, 505}),
    ("http2-version", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", {505}),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n", {400}),
]


def exchange(moat, pki, data, timeout=5):
    """Sends data on a fresh connection: (response or None, connection closed afterwards)."""
    with HTTPConn(moat, cert=pki.dev1, timeout=timeout) as c:
        c.send(data)
        r = c.response_or_close(timeout)
        closed = True if r is None else c.closed_within(3)
    return r, closed


def assert_refused(r, closed, statuses, code=None):
    assert r is not None, "moatd closed the connection without a response"
    assert r.status in statuses, r
    body = json.loads(r.body)
    if code:
        assert body["error"] == code, body
    assert "error" in body and "request_id" in body, body
    assert (r.header("Connection") or "").lower() == "close", r
    assert closed, "moatd kept the connection open after refusing a request"


@pytest.mark.parametrize("name,data,statuses", CASES, ids=[c[0] for c in CASES])
def test_ambiguous_or_malformed_request_is_refused(moat, origin, pki, name, data, statuses):
    r, closed = exchange(moat, pki, data)
    assert_refused(r, closed, statuses, "bad_request" if statuses == {400} else None)
    origin.assert_quiet()


@pytest.mark.parametrize("name,data,status,code", [
    ("expect-other", b"POST / HTTP/1.1\r\n" + HOST + b"Expect: 200-ok\r\n"
     b"Content-Length: 3\r\n\r\nabc", 417, "expectation_failed"),
    ("connect", b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n", 405,
     "method_not_allowed"),
], ids=["expect-other", "connect"])
def test_documented_refusals(moat, origin, pki, name, data, status, code):
    """Statuses from parse.h and docs/operations.md beyond the behaviour contract's list."""
    r, closed = exchange(moat, pki, data)
    assert_refused(r, closed, {status}, code)
    origin.assert_quiet()


def test_refusal_does_not_poison_the_next_connection(moat, origin, pki):
    r, closed = exchange(moat, pki, CASES[0][1])
    assert r.status == 400
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/clean")
        r = c.response()
    assert r.status == 200 and json.loads(r.body)["uri"] == "/clean"
    assert [e["uri"] for e in origin.wait_for(1)] == ["/clean"]
    # the refused request is in the access log too
    assert [a["status"] for a in moat.wait_access(2)] == [400, 200]


@pytest.mark.parametrize("size", [b"0x10", b"-1", b"fffffffffffffffffffff", b"1 0", b"",
                                  b"g", b"+5", b"5\x00"],
                         ids=["0x10", "minus-1", "huge", "1-space-0", "empty", "g", "plus",
                              "nul"])
def test_invalid_chunk_size_is_refused(moatd, pyorigin, pki, size):
    moat = moatd(origin=pyorigin.url)
    data = (b"POST /sink HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + size +
            b"\r\n" + SMUGGLED + b"\r\n0\r\n\r\n")
    r, closed = exchange(moat, pki, data)
    # the sink answers only after a complete body, so no response can have started
    assert_refused(r, closed, {400}, "bad_request")
    time.sleep(0.3)
    reqs = pyorigin.requests()
    assert not any(q.complete for q in reqs), reqs
    assert not any("smuggled" in q.target for q in reqs), reqs
    assert b"/smuggled" not in pyorigin.received()


def test_chunk_data_longer_than_its_size_is_refused(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    data = (b"POST /sink HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabcdef\r\n0\r\n\r\n")
    r, closed = exchange(moat, pki, data)
    assert_refused(r, closed, {400}, "bad_request")
    time.sleep(0.3)
    assert not any(q.complete for q in pyorigin.requests())


def test_valid_chunked_body_with_extension_and_trailer_passes(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    data = (b"POST /sink HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
            b"3;name=value\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(data)
        r = c.response()
    assert r.status == 200, r
    assert json.loads(r.body)["length"] == 13
    req = pyorigin.wait_complete(5)
    assert req.body_len == 13


# ---------------------------------------------------------------------------------------------
# limits at their exact boundaries

def request_line(length):
    """'GET /aaa... HTTP/1.1\\r\\n' of exactly `length` bytes, CRLF included."""
    fixed = len(b"GET / HTTP/1.1\r\n")
    return b"GET /" + b"a" * (length - fixed) + b" HTTP/1.1\r\n"


def test_request_line_limit_is_exact(moatd, origin, pki):
    moat = moatd(moat={"max_request_line": "256"})
    line = request_line(256)
    assert len(line) == 256
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(line + HOST + b"\r\n")
        r = c.response()
    assert r.status == 200, r
    assert origin.one()["uri"] == line.split(b" ")[1].decode()

    r, closed = exchange(moat, pki, request_line(257) + HOST + b"\r\n")
    assert_refused(r, closed, {414}, "uri_too_long")
    time.sleep(0.3)
    assert len(origin.entries()) == 1


def head_of(size, extra_lines=()):
    """A GET head of exactly `size` bytes (final CRLF included), padded in one header."""
    start = b"GET /h HTTP/1.1\r\n" + HOST + b"".join(l + b"\r\n" for l in extra_lines)
    fixed = len(start) + len(b"X-Pad: \r\n\r\n")
    return start + b"X-Pad: " + b"p" * (size - fixed) + b"\r\n\r\n"


def test_header_size_limit_is_exact(moatd, origin, pki):
    moat = moatd(moat={"max_request_line": "512", "max_header_size": "1024"})
    head = head_of(1024)
    assert len(head) == 1024
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(head)
        r = c.response()
    assert r.status == 200, r
    origin.one()

    r, closed = exchange(moat, pki, head_of(1025))
    assert_refused(r, closed, {431}, "headers_too_large")
    time.sleep(0.3)
    assert len(origin.entries()) == 1


def test_size_suffix_k_means_1024(moatd, origin, pki):
    moat = moatd(moat={"max_request_line": "1k", "max_header_size": "2k"})
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(head_of(2048))
        assert c.response().status == 200
    r, closed = exchange(moat, pki, head_of(2049))
    assert_refused(r, closed, {431}, "headers_too_large")


def test_header_count_limit_is_exact(moatd, origin, pki):
    moat = moatd(moat={"max_headers": "10"})
    # Host + 8 + X-Pad = 10 header lines
    ok = head_of(600, [b"X-H%d: v" % i for i in range(8)])
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(ok)
        assert c.response().status == 200
    r, closed = exchange(moat, pki, head_of(600, [b"X-H%d: v" % i for i in range(9)]))
    assert_refused(r, closed, {431}, "headers_too_large")
    time.sleep(0.3)
    assert len(origin.entries()) == 1


def test_huge_head_without_end_is_refused_not_buffered(moatd, origin, pki):
    moat = moatd(moat={"max_request_line": "1024", "max_header_size": "4096"})
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.send(b"GET / HTTP/1.1\r\n" + HOST)
        r = None
        try:
            for _ in range(64):  # 64 x 1 KB, never finishing the head
                c.send(b"X-More: " + b"m" * 1014 + b"\r\n")
        except OSError:
            pass
        r = c.response_or_close(5)
    if r is not None:
        assert r.status == 431, r
    origin.assert_quiet()


# ---------------------------------------------------------------------------------------------
# slow clients

def test_slowloris_head_gets_408(moatd, origin, pki):
    moat = moatd(moat={"request_header_timeout": "2s"})
    head = b"GET /slowloris HTTP/1.1\r\n" + HOST + b"X-Slow: " + b"s" * 80 + b"\r\n\r\n"
    with HTTPConn(moat, cert=pki.dev1, timeout=8) as c:
        t0 = time.monotonic()
        for i in range(len(head)):
            try:
                c.send(head[i:i + 1])
            except OSError:
                break
            if c.wait_data(0.2):
                break
            assert time.monotonic() - t0 < 8, "moatd never gave up on the slow head"
        elapsed = time.monotonic() - t0
        r = c.response_or_close(3)
    assert 1.5 <= elapsed <= 4.0, f"gave up after {elapsed:.2f}s, request_header_timeout=2s"
    if r is not None:
        assert r.status == 408, r
        assert json.loads(r.body)["error"] == "request_timeout"
    origin.assert_quiet()


def test_slow_body_gets_408_or_close(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url, moat={"request_body_timeout": "2s"})
    with HTTPConn(moat, cert=pki.dev1, timeout=8) as c:
        c.send(b"POST /sink HTTP/1.1\r\n" + HOST + b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
        t0 = time.monotonic()
        assert c.wait_data(6), "moatd waited forever for the rest of the body"
        elapsed = time.monotonic() - t0
        r = c.response_or_close(3)
    assert 1.5 <= elapsed <= 4.0, f"gave up after {elapsed:.2f}s, request_body_timeout=2s"
    if r is not None:
        assert r.status == 408, r
        assert json.loads(r.body)["error"] == "request_timeout"
    time.sleep(0.2)
    assert not any(q.complete for q in pyorigin.requests())


def test_body_below_min_rate_is_cut(moatd, pyorigin, pki):
    # Never silent for more than 0.5 s, so request_body_timeout (2 s of silence) alone would
    # never fire; only the average rate can. The contract does not say how long a body may
    # run before its rate counts, so anything up to request_body_timeout + 4 s passes.
    moat = moatd(origin=pyorigin.url, moat={"request_body_timeout": "2s",
                                            "request_body_min_rate": "10000"})
    with HTTPConn(moat, cert=pki.dev1, timeout=12) as c:
        c.send(b"POST /sink HTTP/1.1\r\n" + HOST + b"Content-Length: 100000\r\n\r\n")
        t0 = time.monotonic()
        cut = False
        while time.monotonic() - t0 < 6:
            try:
                c.send(b"y" * 50)  # 100 bytes/s against a minimum of 10000 bytes/s
            except OSError:
                cut = True
                break
            if c.wait_data(0.5):
                cut = True
                break
        r = c.response_or_close(3) if cut else None
    assert cut, "a body trickling at 100 B/s was not cut with request_body_min_rate=10000"
    if r is not None:
        assert r.status == 408, r
    assert not any(q.complete for q in pyorigin.requests())
