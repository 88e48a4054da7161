"""The admin API on its own (docs/api.md): health and version without a token, 401 and the
429 lock-out after repeated failures, routing (404, 405 with Allow), every kind of bad input
(malformed JSON, wrong types, unknown fields, over 1 MiB, no Content-Type, chunked bodies, bad
CSRs, duplicates, bad pagination) answered with the contract's JSON error, tokens, the audit
log, the config file's tenants shown read-only, the store across a restart, file modes in the
data directory, and private keys that never leave moatd except in a factory-mode answer.

Every test starts its own moatd (a start takes well under a second): failed authentications
count per address, so tests that make some must not share a server with the others.
"""

import json
import os
import re
import stat

import pytest

from moattest.admin import (MIB, PRIVATE_KEY_RE, TOKEN_RE, Api, Device, assert_api_error,
                            create_tenant, enroll, make_csr, parse_raw_response, raw_admin)
from moattest.client import curl
from moattest.util import run, wait_until

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def node(moatd, origin):
    """A moatd with the default config (tenants alpha and beta from the file) and its API."""
    m = moatd()
    m.api = Api(m)
    m.origin_url = origin.url
    return m


def acme(m, name="acme", host="acme.test", **extra):
    return create_tenant(m.api, name, host, m.origin_url, **extra)


def token_id(token):
    return token.split("_")[1]


# ---------------------------------------------------------------------------------------------
# health, version, authentication

def test_health_and_version_need_no_token(node):
    r = node.api.get("/health", token=None)
    assert r.status == 200, r
    h = r.json
    assert h["status"] == "ok" and h["store"] == "ok", h
    assert isinstance(h["generation"], int) and h["generation"] >= 1, h
    assert isinstance(h["uptime_s"], int) and 0 <= h["uptime_s"] < 60, h
    assert (r.header("content-type") or "").startswith("application/json"), r

    r = node.api.get("/version", token=None)
    assert r.status == 200, r
    v = r.json
    assert isinstance(v["version"], str) and re.fullmatch(r"\d+\.\d+\.\d+.*", v["version"]), v
    assert v["api"] == "v1" and isinstance(v["schema"], int), v

    # a change makes a new configuration generation: built just after the answer (changes
    # that come together are applied together), and well within the second a change may take
    g0 = h["generation"]
    acme(node)
    wait_until(lambda: node.api.get("/health", token=None).json["generation"] > g0, 1.0,
               what="a new generation after a change")


def test_missing_or_bad_token_is_401(node):
    real = node.operator_token()
    tid = token_id(real)
    secret = real.split("_", 2)[2]
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    cases = {
        "no header": None,
        "garbage": "garbage",
        "unknown id": "moat_0123456789abcdef_" + "A" * 43,
        "right id, wrong secret": f"moat_{tid}_{wrong_secret}",
        "truncated": real[:-5],
    }
    problems = []
    for what, tok in cases.items():
        r = node.api.get("/tenants", token=tok)
        try:
            assert_api_error(r, 401, "unauthorized")
        except AssertionError as e:
            problems.append(f"{what}: {e}")
    # not a bearer token at all
    r = node.api.get("/tenants", token=None, headers={"Authorization": f"Basic {real}"})
    try:
        assert_api_error(r, 401, "unauthorized")
    except AssertionError as e:
        problems.append(f"Basic scheme: {e}")
    assert not problems, "\n".join(problems)
    # nothing of the failures leaked into a change, and the right token still works
    r = node.api.get("/tenants")
    assert r.status == 200, r


def test_repeated_auth_failures_lock_the_address_out(node):
    """10 failures within a minute: the 11th request gets 429 with Retry-After, even with
    the right token, and even for health."""
    for i in range(10):
        r = node.api.get("/tenants", token=f"moat_{i:016x}_" + "x" * 43)
        assert_api_error(r, 401, "unauthorized")
    r = node.api.get("/tenants")
    assert_api_error(r, 429, "too_many_requests")
    ra = r.header("retry-after")
    assert ra is not None and ra.isdigit() and 1 <= int(ra) <= 60, f"Retry-After {ra!r}: {r!r}"
    r = node.api.post("/tenants", {"name": "acme", "hosts": ["acme.test"],
                                   "origin": node.origin_url})
    assert_api_error(r, 429, "too_many_requests")
    r = node.api.get("/health", token=None)
    assert_api_error(r, 429, "too_many_requests")
    assert node.running


# ---------------------------------------------------------------------------------------------
# routing

def test_unknown_paths_are_404(node):
    acme(node)
    for path in ("/v1/nope", "/v1/tenants/acme/nope", "/v1/tenants/acme/devices/x/nope",
                 "/v2/tenants", "/", "/v1tenants", "/v1/tenants/acme/rules/r/stats/x"):
        r = node.api.get(path, absolute=True)
        assert_api_error(r, 404, "not_found")


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/tenants", {"GET", "POST"}),
    ("DELETE", "/tenants", {"GET", "POST"}),
    ("POST", "/tenants/acme", {"GET", "PATCH", "DELETE"}),
    ("PUT", "/tenants/acme", {"GET", "PATCH", "DELETE"}),
    ("DELETE", "/tenants/acme/devices", {"GET", "POST"}),
    ("GET", "/tenants/acme/devices/cam-1/revoke", {"POST"}),
    ("DELETE", "/tenants/acme/devices/cam-1/quarantine", {"POST"}),
    ("POST", "/tenants/acme/devices/cam-1/stats", {"GET"}),
    ("POST", "/tenants/acme/stats", {"GET"}),
    ("GET", "/tenants/acme/cas/1", {"DELETE"}),
    ("PATCH", "/tokens", {"GET", "POST"}),
    ("GET", "/tokens/0123456789abcdef", {"DELETE"}),
    ("POST", "/audit", {"GET"}),
    ("POST", "/health", {"GET"}),
    ("DELETE", "/version", {"GET"}),
])
def test_wrong_method_is_405_with_allow(node, method, path, allowed):
    acme(node)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    r = node.api.request(method, path, body)
    assert_api_error(r, 405, "method_not_allowed")
    allow = r.header("allow")
    assert allow is not None, f"405 without Allow: {r!r}"
    got = {a.strip().upper() for a in allow.split(",") if a.strip()}
    got.discard("HEAD")
    assert got == allowed, f"Allow: {allow!r}, expected {sorted(allowed)}"


# ---------------------------------------------------------------------------------------------
# bad input

def _bad_tenants(origin):
    good = {"name": "acme", "hosts": ["acme.test"], "origin": origin}

    def but(**kw):
        b = dict(good)
        for k, v in kw.items():
            if v is ...:
                b.pop(k)
            else:
                b[k] = v
        return b
    return {
        "name is a number": but(name=5),
        "name with capitals": but(name="Acme"),
        "name with a dot": but(name="ac.me"),
        "name starts with a dash": but(name="-acme"),
        "name too long": but(name="a" * 64),
        "name with NUL": but(name="ac\u0000me"),
        "no name": but(name=...),
        "hosts a string": but(hosts="acme.test"),
        "hosts empty": but(hosts=[]),
        "host a number": but(hosts=[7]),
        "host not a DNS name": but(hosts=["acme test"]),
        "65 hosts": but(hosts=[f"h{i}.acme.test" for i in range(65)]),
        "no origin at all": but(origin=...),
        "origin not a URL": but(origin="127.0.0.1:80"),
        "origin ftp": but(origin="ftp://127.0.0.1:21"),
        "origin a number": but(origin=8080),
        "tcp_origin http": but(tcp_origin="http://127.0.0.1:1883"),
        "quarantine_allow a string": but(quarantine_allow="/firmware/"),
        "quarantine_allow without /": but(quarantine_allow=["firmware/"]),
        "unknown field": but(colour="blue"),
        "ca not an object": but(ca="generate"),
        "server_cert without server_key": but(server_cert="-----BEGIN CERTIFICATE-----\n"),
        "null body": None,
        "array body": [good],
    }


def test_bad_tenant_bodies_are_400(node):
    problems = []
    for what, body in _bad_tenants(node.origin_url).items():
        raw = json.dumps(body).encode()
        r = node.api.post("/tenants", raw=raw)
        try:
            assert_api_error(r, 400, "bad_request")
        except AssertionError as e:
            problems.append(f"{what}: {e}")
    assert not problems, "\n".join(problems)
    items = node.api.ok("GET", "/tenants")["items"]
    assert sorted(t["name"] for t in items) == ["alpha", "beta"], items


@pytest.mark.parametrize("raw", [
    b'{"name": "acme", "hosts": ["acme.test"]',
    b'{"name": "acme", "hosts": ["acme.test"],}',
    b"{'name': 'acme'}",
    b"",
    b"\xff\xfe{}",
    b'{"name": "ac\xffme", "hosts": ["acme.test"], "origin": "http://127.0.0.1:1"}',
    b'{"name": "acme"} {"name": "acme2"}',
    b'{"name": "acme", "name": "acme2", "hosts": ["acme.test"], "origin": "http://127.0.0.1:1"}',
], ids=["truncated", "trailing-comma", "single-quotes", "empty", "bom-garbage", "not-utf8",
        "two-values", "duplicate-key"])
def test_malformed_json_is_400(node, raw):
    r = node.api.post("/tenants", raw=raw)
    assert_api_error(r, 400, "bad_request")
    assert node.api.get("/tenants/acme").status == 404
    assert node.api.get("/tenants/acme2").status == 404


def test_bad_device_and_rule_bodies_are_400(node, tmp_path):
    acme(node)
    dev_cases = {
        "id with a space": {"id": "cam 1"},
        "id too long": {"id": "c" * 129},
        "id a number": {"id": 1},
        "no id": {"model": "cam-x"},
        "firmware a number": {"id": "cam-1", "firmware": 5},
        "tags a string": {"id": "cam-1", "tags": "outdoor"},
        "tag with a space": {"id": "cam-1", "tags": ["out door"]},
        "owner with NUL": {"id": "cam-1", "owner": "a\u0000b"},
        "model too long": {"id": "cam-1", "model": "m" * 129},
        "days zero": {"id": "cam-1", "days": 0},
        "days a string": {"id": "cam-1", "days": "30"},
        "unknown field": {"id": "cam-1", "colour": "red"},
    }
    rule_cases = {
        "action unknown": {"name": "r", "expr": "true", "action": "explode"},
        "mode unknown": {"name": "r", "expr": "true", "mode": "maybe"},
        "scope unknown": {"name": "r", "expr": "true", "scope": "udp"},
        "status 99": {"name": "r", "expr": "true", "status": 99},
        "status 600": {"name": "r", "expr": "true", "status": 600},
        "status with log": {"name": "r", "expr": "true", "action": "log", "status": 403},
        "enabled a string": {"name": "r", "expr": "true", "enabled": "yes"},
        "position a string": {"name": "r", "expr": "true", "position": "first"},
        "expr a number": {"name": "r", "expr": 1},
        "id with a slash": {"id": "a/b", "name": "r", "expr": "true"},
        "unknown field": {"name": "r", "expr": "true", "severity": "high"},
    }
    problems = []
    for what, body in dev_cases.items():
        r = node.api.post("/tenants/acme/devices", body)
        try:
            assert_api_error(r, 400, "bad_request")
        except AssertionError as e:
            problems.append(f"device {what}: {e}")
    for what, body in rule_cases.items():
        r = node.api.post("/tenants/acme/rules", body)
        try:
            assert_api_error(r, 400, "bad_request")
        except AssertionError as e:
            problems.append(f"rule {what}: {e}")
    assert not problems, "\n".join(problems)
    assert node.api.ok("GET", "/tenants/acme/devices")["items"] == []
    assert node.api.ok("GET", "/tenants/acme/rules")["items"] == []

    # PATCH refuses what POST refuses, and changes nothing
    enroll(node.api, "acme", "cam-1", tmp_path, model="cam-x", firmware="1.0.0")
    before = node.api.ok("GET", "/tenants/acme/devices/cam-1")
    for body in ({"firmware": 2}, {"colour": "red"}, {"id": "cam-2"}, {"state": "revoked"},
                 {"tags": [1]}):
        r = node.api.patch("/tenants/acme/devices/cam-1", body)
        assert_api_error(r, 400, "bad_request")
    assert node.api.ok("GET", "/tenants/acme/devices/cam-1") == before
    r = node.api.patch("/tenants/acme", {"origin": "gopher://x"})
    assert_api_error(r, 400, "bad_request")


def test_rule_that_does_not_compile_is_422_with_a_caret(node):
    acme(node)
    expr = 'http.request.uri.path == "/" and http.request.pth == 1'
    r = node.api.post("/tenants/acme/rules", {"name": "broken", "expr": expr})
    doc = assert_api_error(r, 422, "invalid_rule")
    errs = doc.get("errors")
    assert isinstance(errs, list) and errs, doc
    e = errs[0]
    assert e["line"] == 1 and e["col"] == expr.index("http.request.pth") + 1, e
    assert "http.request.pth" in e["message"], e
    src, caret = e["caret"].split("\n")[:2]
    assert src == expr and caret == " " * (e["col"] - 1) + "^", e
    r = node.api.post("/tenants/acme/rules/validate", {"expr": expr, "scope": "http"})
    assert_api_error(r, 422, "invalid_rule")
    r = node.api.post("/tenants/acme/rules/validate", {"expr": 'http.request.uri.path == "/"'})
    assert r.status == 200 and r.json == {"valid": True}, r
    assert node.api.ok("GET", "/tenants/acme/rules")["items"] == []


def test_body_over_1_mib_is_413(node):
    body = {"name": "acme", "hosts": ["acme.test"], "origin": node.origin_url, "pad": ""}
    base = len(json.dumps(body).encode())
    # exactly 1 MiB is not too large: refused for the unknown field only
    body["pad"] = "x" * (MIB - base)
    raw = json.dumps(body).encode()
    assert len(raw) == MIB
    r = node.api.post("/tenants", raw=raw)
    assert_api_error(r, 400, "bad_request")
    body["pad"] += "x"
    r = node.api.post("/tenants", raw=json.dumps(body).encode())
    assert_api_error(r, 413, "payload_too_large")
    # a Content-Length over the limit is refused before the body is read
    data = raw_admin(node, (f"POST /v1/tenants HTTP/1.1\r\nHost: x\r\n"
                            f"Authorization: Bearer {node.operator_token()}\r\n"
                            f"Content-Type: application/json\r\n"
                            f"Content-Length: {64 * MIB}\r\n\r\n{{").encode())
    status, headers, payload = parse_raw_response(data)
    assert status == 413, data[:500]
    assert json.loads(payload)["error"] == "payload_too_large"
    assert node.api.get("/tenants/acme").status == 404


def test_body_without_json_content_type_is_415(node):
    good = {"name": "acme", "hosts": ["acme.test"], "origin": node.origin_url}
    r = node.api.post("/tenants", good, content_type=False)
    assert_api_error(r, 415, "unsupported_media_type")
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        r = node.api.post("/tenants", good, headers={"Content-Type": ctype})
        assert_api_error(r, 415, "unsupported_media_type")
    assert node.api.get("/tenants/acme").status == 404
    # parameters and case do not matter
    r = node.api.post("/tenants", good, headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status == 201, r


def test_chunked_body_is_411(node):
    body = json.dumps({"name": "acme", "hosts": ["acme.test"],
                       "origin": node.origin_url}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    data = raw_admin(node, (f"POST /v1/tenants HTTP/1.1\r\nHost: x\r\n"
                            f"Authorization: Bearer {node.operator_token()}\r\n"
                            f"Content-Type: application/json\r\n"
                            f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunked)
    status, headers, payload = parse_raw_response(data)
    assert status == 411, data[:500]
    doc = json.loads(payload)
    assert doc["error"] == "length_required" and doc["detail"], doc
    assert node.api.get("/tenants/acme").status == 404


def test_invalid_csr_is_400(node, tmp_path):
    acme(node)
    key, csr = make_csr(tmp_path, "someone-else")
    good_key, good_csr = make_csr(tmp_path, "cam-1")
    pem = good_csr.read_text()
    # flip one character of the signature (near the end of the base64 body)
    lines = pem.strip().split("\n")
    body = lines[-2]
    i = len(body) // 2
    lines[-2] = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
    tampered = "\n".join(lines) + "\n"
    cert_pem = node.pki.dev1.cert.read_text()
    cases = {
        "not PEM": "hello",
        "empty": "",
        "truncated": pem[: len(pem) // 2],
        "CN is another id": csr.read_text(),
        "bad signature": tampered,
        "a certificate": cert_pem,
        "a private key": good_key.read_text(),
        "a number": 42,
    }
    problems = []
    for what, value in cases.items():
        r = node.api.post("/tenants/acme/devices", {"id": "cam-1", "csr": value})
        try:
            doc = assert_api_error(r, 400, "bad_request")
            assert not PRIVATE_KEY_RE.search(json.dumps(doc).encode()), doc
        except AssertionError as e:
            problems.append(f"{what}: {e}")
    assert not problems, "\n".join(problems)
    assert_api_error(node.api.get("/tenants/acme/devices/cam-1"), 404, "not_found")
    # the same on renew
    enroll(node.api, "acme", "cam-2", tmp_path / "cam-2")
    r = node.api.post("/tenants/acme/devices/cam-2/renew", {"csr": "hello"})
    assert_api_error(r, 400, "bad_request")
    r = node.api.post("/tenants/acme/devices/cam-2/renew", {"csr": csr.read_text()})
    assert_api_error(r, 400, "bad_request")
    assert len(node.api.ok("GET", "/tenants/acme/devices/cam-2")["certificates"]) == 1


def test_csr_without_cn_and_validity_days(node, tmp_path):
    acme(node)
    key = tmp_path / "no-cn.key"
    csr = tmp_path / "no-cn.csr"
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/O=acme"])
    doc = node.api.ok("POST", "/tenants/acme/devices",
                      {"id": "cam-1", "csr": csr.read_text(), "days": 30}, status=201)
    assert "key" not in doc, doc
    cert = tmp_path / "cam-1.crt"
    cert.write_text(doc["certificate"])
    subject = run(["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt",
                   "multiline"]).stdout
    assert re.search(r"commonName\s*=\s*cam-1\s*$", subject, re.M), subject
    # the certificate carries the CSR's key
    pub_csr = run(["openssl", "req", "-in", str(csr), "-noout", "-pubkey"]).stdout
    pub_crt = run(["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"]).stdout
    assert pub_csr == pub_crt
    (c,) = doc["certificates"]
    end = run(["openssl", "x509", "-in", str(cert), "-noout", "-checkend",
               str(29 * 86400)], check=False)
    assert end.returncode == 0, "valid for less than 29 days"
    end = run(["openssl", "x509", "-in", str(cert), "-noout", "-checkend",
               str(31 * 86400)], check=False)
    assert end.returncode != 0, "valid for more than 31 days"
    assert RFC3339.fullmatch(c["not_after"]) and c["revoked_at"] is None, c


def test_device_filters_and_clearing_fields(node, tmp_path):
    acme(node)
    api = node.api
    for i, (model, fw, tags) in enumerate([("cam-x", "1.2.0", ["outdoor", "batch-7"]),
                                           ("cam-x", "2.0.0", ["batch-7"]),
                                           ("door", "1.2.0", [])]):
        api.ok("POST", "/tenants/acme/devices",
               {"id": f"d{i}", "model": model, "firmware": fw, "tags": tags}, status=201)
    api.ok("POST", "/tenants/acme/devices/d1/quarantine")

    def ids(q):
        return [d["id"] for d in api.ok("GET", f"/tenants/acme/devices?{q}")["items"]]
    assert ids("model=cam-x") == ["d0", "d1"]
    assert ids("firmware=1.2.0") == ["d0", "d2"]
    assert ids("tag=batch-7") == ["d0", "d1"]
    assert ids("tag=outdoor&model=cam-x") == ["d0"]
    assert ids("state=quarantined") == ["d1"]
    assert ids("state=active") == ["d0", "d2"]
    assert ids("model=nope") == []
    d = api.ok("PATCH", "/tenants/acme/devices/d0", {"model": None, "tags": None,
                                                     "owner": "ops"})
    assert d["model"] is None and d["tags"] in ([], None) and d["owner"] == "ops", d
    assert d["firmware"] == "1.2.0", d
    assert ids("model=cam-x") == ["d1"]


def test_duplicates_are_409(node, tmp_path):
    acme(node)
    cases = [
        ("same tenant name", "/tenants",
         {"name": "acme", "hosts": ["other.test"], "origin": node.origin_url}),
        ("a config tenant's name", "/tenants",
         {"name": "alpha", "hosts": ["other.test"], "origin": node.origin_url}),
        ("a host of another tenant", "/tenants",
         {"name": "acme2", "hosts": ["x.test", "ACME.test"], "origin": node.origin_url}),
        ("a host of a config tenant", "/tenants",
         {"name": "acme3", "hosts": ["beta.test"], "origin": node.origin_url}),
        ("a host under a config wildcard", "/tenants",
         {"name": "acme4", "hosts": ["*.alpha.test"], "origin": node.origin_url}),
    ]
    enroll(node.api, "acme", "cam-1", tmp_path)
    node.api.ok("POST", "/tenants/acme/rules", {"id": "r1", "name": "one", "expr": "false"},
                status=201)
    cases += [
        ("same device id", "/tenants/acme/devices", {"id": "cam-1"}),
        ("same rule id", "/tenants/acme/rules", {"id": "r1", "name": "again", "expr": "false"}),
    ]
    problems = []
    for what, path, body in cases:
        r = node.api.post(path, body)
        try:
            assert_api_error(r, 409, "conflict")
        except AssertionError as e:
            problems.append(f"{what}: {e}")
    assert not problems, "\n".join(problems)
    names = sorted(t["name"] for t in node.api.ok("GET", "/tenants")["items"])
    assert names == ["acme", "alpha", "beta"], names
    assert [r["name"] for r in node.api.ok("GET", "/tenants/acme/rules")["items"]] == ["one"]
    # a PATCH to a host of another tenant too
    create_tenant(node.api, "other", "other.test", node.origin_url)
    r = node.api.patch("/tenants/other", {"hosts": ["acme.test"]})
    assert_api_error(r, 409, "conflict")
    assert node.api.ok("GET", "/tenants/other")["hosts"] == ["other.test"]
    # rule ids made from names are made unique instead
    a = node.api.ok("POST", "/tenants/acme/rules", {"name": "Block It", "expr": "false"})
    b = node.api.ok("POST", "/tenants/acme/rules", {"name": "Block It", "expr": "false"})
    c = node.api.ok("POST", "/tenants/acme/rules", {"name": "block it", "expr": "false"})
    assert (a["id"], b["id"], c["id"]) == ("block-it", "block-it-2", "block-it-3"), (a, b, c)


def test_bad_pagination_is_400(node, tmp_path):
    acme(node)
    for i in range(5):
        node.api.ok("POST", "/tenants/acme/devices", {"id": f"cam-{i}"}, status=201)
    problems = []
    for q in ("limit=0", "limit=5000", "limit=1001", "limit=-1", "limit=abc", "limit=1.5",
              "limit=", "state=sleeping"):
        r = node.api.get(f"/tenants/acme/devices?{q}")
        try:
            assert_api_error(r, 400, "bad_request")
        except AssertionError as e:
            problems.append(f"devices?{q}: {e}")
    for q in ("limit=0", "limit=5000", "limit=junk", "before=junk"):
        r = node.api.get(f"/audit?{q}")
        try:
            assert_api_error(r, 400, "bad_request")
        except AssertionError as e:
            problems.append(f"audit?{q}: {e}")
    assert not problems, "\n".join(problems)

    # the good ones: pages of 2 by id, then next = null
    seen, after, pages = [], None, 0
    while True:
        q = "limit=2" + (f"&after={after}" if after else "")
        page = node.api.ok("GET", f"/tenants/acme/devices?{q}")
        pages += 1
        assert len(page["items"]) <= 2, page
        assert all("certificates" not in d for d in page["items"]), page
        seen += [d["id"] for d in page["items"]]
        after = page["next"]
        if after is None:
            break
        assert after == seen[-1], page
        assert pages < 10
    assert seen == [f"cam-{i}" for i in range(5)] and pages == 3, (seen, pages)
    assert node.api.ok("GET", "/tenants/acme/devices?limit=1000")["next"] is None


# ---------------------------------------------------------------------------------------------
# tokens and the audit log

def test_tokens_create_list_use_delete(node):
    acme(node)
    api = node.api
    r = api.post("/tokens", {"name": "ci"})
    assert r.status == 201, r
    t = r.json
    assert re.fullmatch(r"[0-9a-f]{16}", t["id"]), t
    assert TOKEN_RE.fullmatch(t["token"]) and token_id(t["token"]) == t["id"], t
    assert t["name"] == "ci" and t["tenant"] is None, t
    ci = api.with_token(t["token"])
    assert ci.get("/tenants").status == 200

    tt = api.ok("POST", "/tokens", {"name": "acme-ci", "tenant": "acme"}, status=201)
    assert tt["tenant"] == "acme" and TOKEN_RE.fullmatch(tt["token"]), tt
    r = api.post("/tokens", {"name": "ghost", "tenant": "nope"})
    assert r.status in (400, 404), r
    assert_api_error(r, r.status)
    r = api.post("/tokens", {"name": "x", "colour": "red"})
    assert_api_error(r, 400, "bad_request")

    listed = api.get("/tokens")
    assert listed.status == 200, listed
    items = {i["id"]: i for i in listed.json["items"]}
    op = token_id(node.operator_token())
    assert {op, t["id"], tt["id"]} <= set(items), items
    for i in items.values():
        assert set(i) == {"id", "name", "tenant", "created_at", "last_used_at"}, i
        assert RFC3339.fullmatch(i["created_at"]), i
    assert items[t["id"]]["last_used_at"] is not None, items[t["id"]]
    assert items[tt["id"]]["last_used_at"] is None, items[tt["id"]]
    assert items[tt["id"]]["tenant"] == "acme"
    for secret in (t["token"], tt["token"], node.operator_token()):
        assert secret.split("_", 2)[2].encode() not in listed.body, "a secret in the list"

    r = api.delete(f"/tokens/{t['id']}")
    assert r.status == 204 and r.body == b"", r
    assert_api_error(ci.get("/tenants"), 401, "unauthorized")
    assert_api_error(api.delete(f"/tokens/{t['id']}"), 404, "not_found")
    assert t["id"] not in {i["id"] for i in api.ok("GET", "/tokens")["items"]}


def test_last_operator_token_cannot_delete_itself(node):
    op = token_id(node.operator_token())
    assert_api_error(node.api.delete(f"/tokens/{op}"), 409, "conflict")
    assert node.api.get("/tenants").status == 200
    # with a second operator token it can; then the second is the last one
    second = node.api.ok("POST", "/tokens", {"name": "second"}, status=201)
    r = node.api.delete(f"/tokens/{op}")
    assert r.status == 204, r
    assert_api_error(node.api.get("/tenants"), 401, "unauthorized")
    api2 = node.api.with_token(second["token"])
    assert_api_error(api2.delete(f"/tokens/{second['id']}"), 409, "conflict")
    assert api2.get("/tenants").status == 200


def test_audit_log_records_who_what_and_where(node, tmp_path):
    api = node.api
    op = token_id(node.operator_token())
    acme(node)
    second = api.ok("POST", "/tokens", {"name": "second"}, status=201)
    api2 = api.with_token(second["token"])
    enroll(api2, "acme", "cam-1", tmp_path, model="cam-x")
    api2.ok("POST", "/tenants/acme/devices/cam-1/revoke")
    api.ok("POST", "/tenants/acme/rules", {"id": "r1", "name": "one", "expr": "false"})
    api.ok("DELETE", "/tenants/acme/rules/r1", status=204)
    reads_before = [e for e in api.ok("GET", "/audit")["items"] if e["actor"] != "moatd"]
    api.get("/tenants")  # reads are not changes
    api.post("/tenants", {"name": "Bad!"})  # nor are refused writes

    r = api.get("/audit")
    assert r.status == 200, r
    doc = r.json
    # moatd's own entries (the first operator token, made at the first start) aside
    items = [e for e in doc["items"] if e["actor"] != "moatd"]
    assert len(items) == len(reads_before), (items, reads_before)
    seqs = [e["seq"] for e in items]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), seqs
    for e in items:
        assert {"seq", "at", "actor", "source", "tenant", "action", "object",
                "detail"} <= set(e), e
        assert RFC3339.fullmatch(e["at"]), e
        assert e["source"] == "127.0.0.1", e
    by_action = {}
    for e in items:
        by_action.setdefault(e["action"], []).append(e)
    (rev,) = by_action["device.revoke"]
    assert rev["actor"] == second["id"] and rev["tenant"] == "acme", rev
    assert rev["object"] == "acme/cam-1", rev
    actions = [e["action"] for e in reversed(items)]
    kinds = [a.split(".")[0] for a in actions]
    assert kinds == ["tenant", "token", "device", "device", "rule", "rule"], actions
    actors = [e["actor"] for e in reversed(items)]
    assert actors == [op, op, second["id"], second["id"], op, op], actors
    # the token's secret is never recorded, nor a key
    assert second["token"].split("_", 2)[2].encode() not in r.body
    assert not PRIVATE_KEY_RE.search(r.body)

    # pages, newest first
    all_seqs = [e["seq"] for e in doc["items"]]
    p1 = api.ok("GET", "/audit?limit=2")
    assert [e["seq"] for e in p1["items"]] == all_seqs[:2], p1
    p2 = api.ok("GET", f"/audit?limit=2&before={p1['next']}")
    assert [e["seq"] for e in p2["items"]] == all_seqs[2:4], (p1, p2)
    full = api.get("/audit?limit=1000")
    assert full.status == 200, full
    assert [e["seq"] for e in full.json["items"]] == [e["seq"] for e in doc["items"]], full


# ---------------------------------------------------------------------------------------------
# the config file's tenants

def test_config_tenants_are_listed_read_only(node, pki, tmp_path):
    api = node.api
    items = {t["name"]: t for t in api.ok("GET", "/tenants")["items"]}
    assert {"alpha", "beta"} <= set(items), items
    assert items["alpha"]["source"] == "config" and items["beta"]["source"] == "config"
    assert items["alpha"]["hosts"] == ["alpha.test", "*.alpha.test"], items["alpha"]
    alpha = api.ok("GET", "/tenants/alpha")
    assert alpha["source"] == "config", alpha

    ca_cert = pki.beta_ca.cert.read_text()
    writes = [
        ("PATCH", "/tenants/alpha", {"origin": node.origin_url}),
        ("PATCH", "/tenants/alpha", {"quarantine_allow": ["/firmware/"]}),
        ("DELETE", "/tenants/alpha", None),
        ("POST", "/tenants/alpha/devices", {"id": "cam-1"}),
        ("POST", "/tenants/alpha/cas", {"generate": True}),
        ("POST", "/tenants/alpha/cas", {"cert": ca_cert}),
        ("POST", "/tenants/alpha/rules", {"name": "r", "expr": "false"}),
        ("POST", "/tenants/alpha/devices/dev-1/quarantine", None),
        ("POST", "/tenants/alpha/devices/dev-1/revoke", None),
        ("DELETE", "/tenants/beta", None),
    ]
    problems = []
    for method, path, body in writes:
        r = api.request(method, path, body)
        try:
            doc = assert_api_error(r, 409)
            # docs/api.md says "409 read_only" for these, and its error table "conflict"
            assert doc["error"] in ("read_only", "conflict"), doc
        except AssertionError as e:
            problems.append(f"{method} {path}: {e}")
    assert not problems, "\n".join(problems)
    assert api.ok("GET", "/tenants/alpha") == alpha
    # still serving
    assert curl(node, "/still-alpha", cert=pki.dev1).status == 200
    assert curl(node, "/still-beta", host="beta.test", cert=pki.beta_dev).status == 200


# ---------------------------------------------------------------------------------------------
# the store across a restart; files

def test_store_survives_a_restart(node, tmp_path):
    api = node.api
    token_path = node.dir / "data" / "operator.token"
    token_text = token_path.read_bytes()
    t = acme(node, quarantine_allow=["/firmware/"])
    dev = enroll(api, "acme", "cam-1", tmp_path / "d1", model="cam-x", firmware="1.2.0",
                 tags=["outdoor"])
    enroll(api, "acme", "cam-2", tmp_path / "d2")
    api.ok("POST", "/tenants/acme/devices/cam-2/quarantine")
    rule = api.ok("POST", "/tenants/acme/rules",
                  {"id": "no-unlock", "name": "no unlock",
                   "expr": 'http.request.uri.path eq "/unlock"'}, status=201)
    tok = api.ok("POST", "/tokens", {"name": "acme-ci", "tenant": "acme"}, status=201)
    before = {p: api.ok("GET", p) for p in ("/tenants", "/tenants/acme", "/tenants/acme/cas",
                                            "/tenants/acme/devices",
                                            "/tenants/acme/devices/cam-1",
                                            "/tenants/acme/devices/cam-2",
                                            "/tenants/acme/rules")}
    assert dev.curl(node, "/before").status == 200

    assert node.stop() == 0
    node.start()
    assert token_path.read_bytes() == token_text, "the operator token file changed"
    api = Api(node)
    assert api.get("/tenants").status == 200, "the operator token no longer works"
    for p, doc in before.items():
        after = api.ok("GET", p)
        if p == "/tenants/acme/rules":
            for x in list(after["items"]) + list(doc["items"]):
                x.pop("hits", None)  # counted since the start
        assert after == doc, f"GET {p} differs after the restart:\n{doc}\n{after}"
    assert api.ok("GET", "/tenants/acme")["server_ca"] == t["server_ca"]
    assert api.with_token(tok["token"]).get("/tenants/acme/devices").status == 200
    # and it all still applies: the device connects, the rule blocks, cam-2 is quarantined
    assert dev.curl(node, "/after").status == 200
    blocked = dev.curl(node, "/unlock")
    assert blocked.status == 403 and json.loads(blocked.body)["rule"] == rule["id"], blocked
    cam2 = Device.from_dir(tmp_path / "d2", "cam-2", "acme.test")
    r = cam2.curl(node, "/x")
    assert r.status == 403 and json.loads(r.body)["error"] == "quarantined", r


def test_data_files_are_private(node, tmp_path):
    acme(node)
    dev = enroll(node.api, "acme", "cam-1", tmp_path)
    node.api.ok("POST", "/tenants/acme/cas", {"generate": True}, status=201)
    node.api.ok("POST", "/tokens", {"name": "ci"}, status=201)
    data = node.dir / "data"
    files = [data / "moat.db", data / "operator.token"]
    files += [data / f"moat.db-{x}" for x in ("wal", "shm", "journal")
              if (data / f"moat.db-{x}").exists()]
    keys = sorted(p for p in (data / "keys").rglob("*") if p.is_file())
    # acme's two device CAs at least
    assert len(keys) >= 2, f"expected CA keys under {data / 'keys'}, found {keys}"
    # and wherever else a private key is kept (the edge CA's, the tenant's server key)
    for p in data.rglob("*"):
        if p.is_file() and p not in keys and PRIVATE_KEY_RE.search(p.read_bytes()):
            keys.append(p)
    wrong = {}
    for p in files + keys:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        if mode != 0o600:
            wrong[str(p)] = oct(mode)
    assert not wrong, f"files that must be 0600: {wrong}"
    kdir = stat.S_IMODE(os.stat(data / "keys").st_mode)
    assert kdir & 0o077 == 0, f"{data / 'keys'} is {oct(kdir)}"
    # the factory key was shown once and stored nowhere
    # (the base64 from byte 40 on: what comes before is the same for every P-256 key)
    key_body = "".join(dev.key.read_text().strip().split("\n")[1:-1]).encode()
    for p in data.rglob("*"):
        if p.is_file():
            assert key_body[40:80] not in p.read_bytes(), f"the device's private key is in {p}"


def test_private_keys_leave_only_in_factory_answers(node, tmp_path, pki):
    api = node.api
    # an imported CA with its key, and a tenant with its own server certificate and key
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ca_dir / "ca.key"), "-out",
         str(ca_dir / "ca.crt"), "-subj", "/CN=imported CA", "-days", "365",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    answers = []
    t = acme(node)
    answers.append(("create tenant", t))
    g = create_tenant(api, "gamma-api", "gamma.test", node.origin_url,
                      server_cert=pki.gamma_server.cert.read_text(),
                      server_key=pki.gamma_server.key.read_text())
    answers.append(("create tenant with server key", g))
    answers.append(("import CA", api.ok("POST", "/tenants/acme/cas",
                                        {"cert": (ca_dir / "ca.crt").read_text(),
                                         "key": (ca_dir / "ca.key").read_text()},
                                        status=201)))
    answers.append(("generate CA", api.ok("POST", "/tenants/acme/cas", {"generate": True},
                                          status=201)))
    factory = enroll(api, "acme", "cam-1", tmp_path / "f")
    csr_dev = enroll(api, "acme", "cam-2", tmp_path / "c", csr_key=True)
    answers.append(("enroll from CSR", csr_dev.doc))
    _, csr = make_csr(tmp_path, "cam-2", name="cam-2-renew")
    answers.append(("renew from CSR", api.ok("POST", "/tenants/acme/devices/cam-2/renew",
                                             {"csr": csr.read_text()})))
    renewed = api.ok("POST", "/tenants/acme/devices/cam-1/renew", {})
    assert PRIVATE_KEY_RE.search(renewed.get("key", "").encode()), \
        f"factory-mode renew without a key: {renewed}"
    assert PRIVATE_KEY_RE.search(factory.doc["key"].encode())
    answers.append(("patch tenant", api.ok("PATCH", "/tenants/gamma-api",
                                           {"server_cert": pki.gamma_server.cert.read_text(),
                                            "server_key": pki.gamma_server.key.read_text()})))
    api.ok("POST", "/tenants/acme/rules", {"name": "r", "expr": "false"}, status=201)
    for path in ("/tenants", "/tenants/acme", "/tenants/gamma-api", "/tenants/acme/cas",
                 "/tenants/gamma-api/cas", "/tenants/acme/devices",
                 "/tenants/acme/devices/cam-1", "/tenants/acme/devices/cam-2",
                 "/tenants/acme/rules", "/tenants/acme/stats", "/tenants/acme/devices/cam-1/stats",
                 "/tokens", "/audit", "/health", "/version"):
        r = api.get(path)
        assert r.status == 200, r
        answers.append((f"GET {path}", r.body.decode()))
    # refusals do not echo what they refused
    for what, path, body in (
            ("a server key of another certificate", "/tenants",
             {"name": "delta", "hosts": ["delta.test"], "origin": node.origin_url,
              "server_cert": pki.gamma_server.cert.read_text(),
              "server_key": pki.alpha_server.key.read_text()}),
            ("a CA key of another certificate", "/tenants/acme/cas",
             {"cert": (ca_dir / "ca.crt").read_text(),
              "key": pki.alpha_ca.key.read_text()}),
            ("a key that is not PEM", "/tenants/acme/cas",
             {"cert": (ca_dir / "ca.crt").read_text(),
              "key": (ca_dir / "ca.key").read_text()[:-60]})):
        r = api.post(path, body)
        assert_api_error(r, 400, "bad_request")
        answers.append((f"refused: {what}", r.body.decode()))
    leaks = [what for what, doc in answers
             if PRIVATE_KEY_RE.search((doc if isinstance(doc, str) else json.dumps(doc)).encode())]
    assert not leaks, f"a private key in these answers: {leaks}"
    cas = api.ok("GET", "/tenants/acme/cas")["items"]
    assert len(cas) == 3 and all(c["has_key"] for c in cas), cas
    assert all(set(c) >= {"id", "subject", "fingerprint", "not_after", "generated", "has_key",
                          "cert"} and "key" not in c for c in cas), cas
