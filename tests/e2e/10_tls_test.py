"""TLS: device identity, refusals and why they are logged, SNI to tenant, optional mTLS,
session resumption bound to its tenant and to revocation."""

import re
import socket
import time

import pytest

from moattest.client import (ConnectionClosed, HTTPConn, curl, s_client, s_client_reused,
                             tls_context)

VERSIONS = ["1.2", "1.3"]

# The contract's refusal line, e.g.
#   [warn] tls handshake refused: listener=devices remote=127.0.0.1:5555 tenant=demo
#   reason="certificate has expired"
# The example is not exhaustive, so other fields may come in between.
def refusal(reason, tenant="alpha"):
    return (r"\[warn\] tls handshake refused:"
            r"(?=.* listener=devices\b)(?=.* remote=127\.0\.0\.1:\d+\b)"
            rf"(?=.* tenant={tenant}\b)(?=.* reason=\"[^\"]*{reason})")


# ---------------------------------------------------------------------------------------------
# a good device

@pytest.mark.parametrize("tls", VERSIONS)
def test_good_device_reaches_origin_with_identity(moat, origin, pki, tls):
    r = curl(moat, "/hello?x=1", cert=pki.dev1, tls=tls)
    assert (r.rc, r.status) == (0, 200), r
    e = origin.one()
    assert e["uri"] == "/hello?x=1"
    assert e["tenant"] == "alpha"
    assert e["device"] == "dev-1"
    # openssl x509 -fingerprint -sha256 of the device certificate, lowercase, no colons
    assert e["cert_sha256"] == pki.dev1.sha256
    # openssl x509 -serial, after the '='
    assert e["cert_serial"] == pki.dev1.serial
    assert e["cert_verified"] == "SUCCESS"
    assert e["forwarded"] == "for=127.0.0.1;proto=https"
    assert re.fullmatch(r"[0-9a-f]{16}", e["request_id"]), e["request_id"]
    # the small JSON body nginx echoes came back intact
    assert r.json()["device"] == "dev-1"
    a = moat.wait_access(1)[-1]
    assert a["tls"] == f"TLSv{tls}"
    assert a["resumed"] is False


def test_device_without_eku_is_accepted(moat, origin, pki):
    """clientAuth is checked only when the certificate has an extended key usage at all."""
    r = curl(moat, "/noeku", cert=pki.noeku)
    assert r.status == 200, r
    assert origin.one()["device"] == "dev-noeku"


@pytest.mark.parametrize("source,cert,expect", [
    ("cn", "dev1", "dev-1"),
    ("san-uri", "dev1", "urn:dev:1"),
    ("san-dns", "dns", "dev-dns.devices.alpha.test"),
])
def test_device_id_source(moatd, origin, pki, source, cert, expect):
    moat = moatd(tenants={"alpha": {"device_id": source}})
    r = curl(moat, "/id", cert=getattr(pki, cert))
    assert r.status == 200, r
    e = origin.one()
    assert e["device"] == expect
    assert moat.wait_access(1)[-1]["device"] == expect


# ---------------------------------------------------------------------------------------------
# refusals with mtls=require

REFUSED = [
    ("no-cert", None, r"cert"),
    ("expired", "expired", r"certificate has expired"),
    ("not-yet-valid", "notyet", r"certificate is not yet valid"),
    ("wrong-eku", "wrong_eku", r"(unsuitable|unsupported) certificate purpose"),
    ("beta-device-on-alpha", "beta_dev",
     r"(unable to get local issuer certificate|unable to verify the first certificate)"),
    ("revoked", "revoked", r"certificate revoked"),
]


@pytest.mark.parametrize("tls", VERSIONS)
@pytest.mark.parametrize("case,cert,reason", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_device(moat, origin, pki, case, cert, reason, tls):
    r = curl(moat, "/must-not-arrive", cert=getattr(pki, cert) if cert else None, tls=tls)
    # TLS 1.2 fails in the handshake, TLS 1.3 at the first read after it: no HTTP either way
    assert r.rc != 0, r
    assert r.status == 0, r
    moat.wait_log(refusal(reason))
    origin.assert_quiet()


def test_beta_device_is_accepted_by_beta_only(moat, origin, pki):
    r = curl(moat, "/beta", host="beta.test", cert=pki.beta_dev)
    assert r.status == 200, r
    e = origin.one()
    assert (e["tenant"], e["device"]) == ("beta", "beta-dev-1")
    r = curl(moat, "/alpha-dev-on-beta", host="beta.test", cert=pki.dev1)
    assert r.status == 0, r
    moat.wait_log(refusal(r"(unable to get local issuer|unable to verify the first)",
                          tenant="beta"))


def test_handshake_timeout_closes_silent_connection(moatd):
    moat = moatd(moat={"handshake_timeout": "1s"})
    s = socket.create_connection((moat.host, moat.port), timeout=6)
    t0 = time.monotonic()
    try:
        data = s.recv(1024)
    except ConnectionResetError:
        data = b""
    elapsed = time.monotonic() - t0
    s.close()
    assert data == b""
    assert 0.7 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s, handshake_timeout is 1s"


# ---------------------------------------------------------------------------------------------
# SNI -> tenant

@pytest.mark.parametrize("servername", ["unknown.test", "a.b.alpha.test", None],
                         ids=["unknown", "two-labels-under-wildcard", "no-sni"])
def test_no_tenant_for_sni_is_refused_with_unrecognized_name(moat, origin, pki, servername):
    p = s_client(moat, servername=servername, cert=pki.dev1)
    out = p.stdout + p.stderr
    assert re.search(r"unrecognized name|alert number 112", out), out
    assert "HTTP/1.1" not in p.stdout
    origin.assert_quiet()


@pytest.mark.parametrize("servername,tenant,cert", [
    ("ALPHA.TEST", "alpha", "dev1"),
    ("x.alpha.test", "alpha", "dev1"),
    ("Beta.Test", "beta", "beta_dev"),
])
def test_sni_matching_is_case_insensitive_with_one_label_wildcards(moat, origin, pki,
                                                                    servername, tenant, cert):
    p = s_client(moat, servername=servername, cert=getattr(pki, cert),
                 request=f"GET /sni HTTP/1.1\r\nHost: {servername}\r\nConnection: close\r\n\r\n")
    assert "HTTP/1.1 200" in p.stdout, p.stdout + p.stderr
    assert origin.one()["tenant"] == tenant


@pytest.mark.parametrize("servername", [None, "unknown.test"], ids=["no-sni", "unknown-sni"])
def test_default_tenant_takes_connections_without_a_matching_sni(moatd, origin, pki,
                                                                 servername):
    moat = moatd(listener={"default_tenant": "alpha"})
    ctx = tls_context(pki, pki.dev1)
    ctx.check_hostname = False
    with HTTPConn(moat, ctx=ctx, host=servername, sni=servername is not None) as c:
        c.request("GET", "/default", host="alpha.test", headers=["Connection: close"])
        r = c.response()
    assert r.status == 200, r
    e = origin.one()
    assert (e["tenant"], e["device"]) == ("alpha", "dev-1")


# ---------------------------------------------------------------------------------------------
# mtls = optional

def test_optional_mtls_without_certificate_says_none(moatd, origin):
    moat = moatd(tenants={"alpha": {"mtls": "optional"}})
    # a device without a certificate must not be able to claim an identity either
    r = curl(moat, "/opt", cert=None,
             headers=["Moat-Device: dev-1", "Moat-Cert-Verified: SUCCESS",
                      f"Moat-Cert-Sha256: {'0' * 64}", "Moat-Cert-Serial: 01"])
    assert r.status == 200, r
    e = origin.one()
    assert e["tenant"] == "alpha"
    assert e["cert_verified"] == "NONE"
    assert e["device"] == ""
    assert e["cert_sha256"] == ""
    assert e["cert_serial"] == ""


@pytest.mark.parametrize("cert,reason", [
    ("expired", "expired"),
    ("wrong_eku", "purpose"),
    ("beta_dev", "(issuer|first certificate)"),
    ("revoked", "revoked"),
])
def test_optional_mtls_with_bad_certificate_says_failed(moatd, origin, pki, cert, reason):
    moat = moatd(tenants={"alpha": {"mtls": "optional"}})
    r = curl(moat, "/opt-bad", cert=getattr(pki, cert), headers=["Moat-Device: dev-1"])
    assert r.status == 200, r
    e = origin.one()
    assert e["cert_verified"].startswith("FAILED:"), e
    assert re.search(reason, e["cert_verified"]), e
    assert e["device"] == "", "no device id without a verified certificate"


def test_optional_mtls_with_good_certificate_says_success(moatd, origin, pki):
    moat = moatd(tenants={"alpha": {"mtls": "optional"}})
    r = curl(moat, "/opt-good", cert=pki.dev1)
    assert r.status == 200, r
    e = origin.one()
    assert (e["cert_verified"], e["device"], e["cert_sha256"]) == ("SUCCESS", "dev-1",
                                                                   pki.dev1.sha256)


# ---------------------------------------------------------------------------------------------
# session resumption

@pytest.mark.parametrize("tls", VERSIONS)
def test_session_resumes_on_the_same_tenant(moat, origin, pki, tmp_path, tls):
    sess = tmp_path / "alpha.sess"
    p1 = s_client(moat, cert=pki.dev1, tls=tls, sess_out=sess)
    assert "HTTP/1.1 200" in p1.stdout, p1.stdout + p1.stderr
    assert s_client_reused(p1.stdout) == "New"
    assert sess.exists() and sess.stat().st_size > 0
    p2 = s_client(moat, cert=pki.dev1, tls=tls, sess_in=sess)
    assert s_client_reused(p2.stdout) == "Reused", p2.stdout + p2.stderr
    assert "HTTP/1.1 200" in p2.stdout
    first, second = origin.wait_for(2)
    # a resumed connection keeps the identity of its certificate
    for e in (first, second):
        assert (e["tenant"], e["device"], e["cert_sha256"], e["cert_verified"]) == (
            "alpha", "dev-1", pki.dev1.sha256, "SUCCESS")
    log = moat.wait_access(2)
    assert [a["resumed"] for a in log[-2:]] == [False, True]


@pytest.mark.parametrize("tls", VERSIONS)
def test_session_from_one_tenant_never_resumes_on_another(moatd, origin, pki, tmp_path, tls):
    # beta also trusts alpha's devices here, so the full handshake that must happen instead of
    # resumption succeeds and shows up as beta at the origin
    moat = moatd(tenants={"beta": {"device_ca": f"{pki.beta_ca.cert},{pki.alpha_ca.cert}",
                                   "crl": None}})
    sess = tmp_path / "alpha.sess"
    p1 = s_client(moat, servername="alpha.test", cert=pki.dev1, tls=tls, sess_out=sess)
    assert "HTTP/1.1 200" in p1.stdout, p1.stdout + p1.stderr
    p2 = s_client(moat, servername="beta.test", cert=pki.dev1, tls=tls, sess_in=sess)
    assert s_client_reused(p2.stdout) == "New", p2.stdout + p2.stderr
    assert "HTTP/1.1 200" in p2.stdout, p2.stdout + p2.stderr
    assert "subject=CN = beta.test" in p2.stdout
    first, second = origin.wait_for(2)
    assert (first["tenant"], second["tenant"]) == ("alpha", "beta")
    # and the session still resumes where it belongs
    p3 = s_client(moat, servername="alpha.test", cert=pki.dev1, tls=tls, sess_in=sess)
    assert s_client_reused(p3.stdout) == "Reused", p3.stdout + p3.stderr


@pytest.mark.parametrize("tls", VERSIONS)
def test_revoked_device_cannot_resume(moatd, origin, pki, tmp_path, tls):
    dev = pki.issue_device(f"dev-resume-tls{tls}")
    crl = tmp_path / "alpha.crl.pem"
    pki.alpha_ca.make_crl([pki.revoked], crl)
    moat = moatd(tenants={"alpha": {"crl": str(crl)}})
    s1, s2 = tmp_path / "s1.sess", tmp_path / "s2.sess"
    p1 = s_client(moat, cert=dev, tls=tls, sess_out=s1)
    assert "HTTP/1.1 200" in p1.stdout, p1.stdout + p1.stderr
    # resumption works for this device before it is revoked
    p2 = s_client(moat, cert=dev, tls=tls, sess_in=s1, sess_out=s2)
    assert s_client_reused(p2.stdout) == "Reused", p2.stdout + p2.stderr
    assert "HTTP/1.1 200" in p2.stdout

    pki.alpha_ca.make_crl([pki.revoked, dev], crl)
    log_start = len(moat.log_lines())
    moat.reload()
    for sess in (s2, s1):
        p = s_client(moat, cert=dev, tls=tls, sess_in=sess)
        assert s_client_reused(p.stdout) != "Reused", p.stdout + p.stderr
        assert "HTTP/1.1 200" not in p.stdout, p.stdout
    moat.wait_log(r"revoked", start=log_start)
    time.sleep(0.3)
    assert len(origin.entries()) == 2, origin.entries()
    # the revocation is for that device only
    assert curl(moat, "/still-ok", cert=pki.dev1, tls=tls).status == 200


def test_revocation_applies_to_an_open_connection(moatd, origin, pki, tmp_path):
    dev = pki.issue_device("dev-open-connection")
    crl = tmp_path / "alpha.crl.pem"
    pki.alpha_ca.make_crl([pki.revoked], crl)
    moat = moatd(tenants={"alpha": {"crl": str(crl)}})
    with HTTPConn(moat, cert=dev, timeout=5) as c:
        c.request("GET", "/before-revocation")
        assert c.response().status == 200
        pki.alpha_ca.make_crl([pki.revoked, dev], crl)
        moat.reload()
        try:
            c.request("GET", "/after-revocation")
            status = c.response().status
        except (ConnectionClosed, OSError):
            status = None
    assert status != 200, "a revoked device's request on an open connection was served"
    time.sleep(0.3)
    assert [e["uri"] for e in origin.entries()] == ["/before-revocation"]
