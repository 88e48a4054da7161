"""Pooled origin connections that the origin closes just as a request reaches it.

The python origin's /stale answers the first request of a connection and closes the
connection, unanswered, on any later one: what an origin whose keep-alive timeout fires as the
request arrives does. moatd sends an idempotent request without a body once more on a new
connection; anything else gets the 502, since the origin may have acted on it.
"""

import json

import pytest

from moattest.client import HTTPConn


def pooled_then(moat, pki, method, path, body=b""):
    """GET /stale (which leaves a pooled connection), then `method path` on the same device
    connection, so that the same worker takes that pooled connection."""
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/stale")
        first = c.response()
        assert first.status == 200 and first.body == b"py origin ok\n", first
        c.request(method, path, body=body)
        return c.response(head_request=method == "HEAD")


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_idempotent_request_is_sent_again_on_a_new_connection(moatd, pyorigin, pki, how, method):
    moat = moatd(origin=pyorigin.url)
    r = pooled_then(moat, pki, method, f"/stale?how={how}")
    assert r.status == 200, r
    reqs = pyorigin.requests()
    assert [(q.method, q.index) for q in reqs] == [("GET", 0), (method, 1), (method, 0)]
    assert reqs[1].conn_id == reqs[0].conn_id != reqs[2].conn_id
    assert pyorigin.connections() == 2
    moat.wait_log(r"closed a reused connection before answering; request sent again")


def test_request_with_a_body_is_not_sent_again(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    r = pooled_then(moat, pki, "PUT", "/stale", body=b"hello")
    assert r.status == 502, r
    assert json.loads(r.body)["error"] in ("bad_origin_response", "origin_unreachable")
    assert [q.method for q in pyorigin.requests()] == ["GET", "PUT"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_request_is_not_sent_again(moatd, pyorigin, pki, method):
    moat = moatd(origin=pyorigin.url)
    r = pooled_then(moat, pki, method, "/stale")
    assert r.status == 502, r
    assert json.loads(r.body)["error"] == "bad_origin_response"
    assert [q.method for q in pyorigin.requests()] == ["GET", method]


def test_sent_again_once_only(moatd, pyorigin, pki):
    """/close closes every connection unanswered: the second attempt's failure is the 502."""
    moat = moatd(origin=pyorigin.url)
    r = pooled_then(moat, pki, "GET", "/close")
    assert r.status == 502, r
    assert json.loads(r.body)["error"] == "bad_origin_response"
    assert [q.path for q in pyorigin.requests()] == ["/stale", "/close", "/close"]


def test_new_connection_failing_is_not_retried(moatd, pyorigin, pki):
    """A request on a new origin connection that closes unanswered is a plain 502."""
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        c.request("GET", "/close")
        r = c.response()
    assert r.status == 502, r
    assert [q.path for q in pyorigin.requests()] == ["/close"]


def test_device_connection_goes_on_after_a_retry(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url)
    with HTTPConn(moat, cert=pki.dev1) as c:
        for i in range(4):
            c.request("GET", "/stale")
            r = c.response()
            assert r.status == 200, (i, r)
    # every request after the first met a stale pooled connection and was sent again
    assert [q.index for q in pyorigin.requests()] == [0, 1, 0, 1, 0, 1, 0]
