"""The fixtures themselves: the PKI yields the verification outcomes the TLS tests rely on,
and both origins answer and log. None of this needs moatd."""

import json
import socket
import subprocess

import pytest

from moattest.util import run


def verify(pki, cert, ca, crl=None, purpose="sslclient"):
    args = ["openssl", "verify", "-CAfile", str(ca.cert), "-purpose", purpose]
    if crl is not None:
        args += ["-crl_check", "-CRLfile", str(crl)]
    return run(args + [str(cert.cert)], check=False)


@pytest.mark.parametrize("name,expect", [
    ("dev1", "OK"),
    ("noeku", "OK"),
    ("dns", "OK"),
    ("expired", "certificate has expired"),
    ("notyet", "certificate is not yet valid"),
    ("wrong_eku", "certificate purpose"),
    ("revoked", "certificate revoked"),
])
def test_alpha_device_certificates(pki, name, expect):
    p = verify(pki, getattr(pki, name), pki.alpha_ca, pki.alpha_crl)
    assert expect in p.stdout + p.stderr, p


def test_beta_device_is_unknown_to_alpha(pki):
    p = verify(pki, pki.beta_dev, pki.alpha_ca)
    assert "unable to get local issuer certificate" in p.stdout + p.stderr
    assert verify(pki, pki.beta_dev, pki.beta_ca, pki.beta_crl).returncode == 0


@pytest.mark.parametrize("name,host", [("alpha_server", "alpha.test"),
                                       ("alpha_server", "x.alpha.test"),
                                       ("beta_server", "beta.test")])
def test_server_certificates(pki, name, host):
    cert = getattr(pki, name)
    p = run(["openssl", "verify", "-CAfile", str(pki.server_ca.cert), "-purpose", "sslserver",
             "-verify_hostname", host, str(cert.cert)], check=False)
    assert p.returncode == 0, p


def test_certificate_facts_match_openssl(pki):
    import hashlib
    assert pki.dev1.sha256 == hashlib.sha256(pki.dev1.der).hexdigest()
    assert pki.dev1.serial == pki.dev1.serial.upper()
    assert len(pki.dev1.serial) >= 2


def test_fresh_crl_revokes_only_what_it_lists(pki, tmp_path):
    dev = pki.issue_device("dev-crl-selftest")
    crl = pki.alpha_ca.make_crl([], tmp_path / "crl.pem")
    assert verify(pki, dev, pki.alpha_ca, crl).returncode == 0
    assert verify(pki, pki.revoked, pki.alpha_ca, crl).returncode == 0
    pki.alpha_ca.make_crl([dev], crl)
    p = verify(pki, dev, pki.alpha_ca, crl)
    assert "certificate revoked" in p.stdout + p.stderr


def curl_plain(url, *args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args, url], capture_output=True,
                          text=True, timeout=20)


def test_nginx_origin_logs_identity_headers(origin):
    p = curl_plain(f"{origin.url}/x?y=1", "-H", "Moat-Device: d", "-H", "Moat-Tenant: t",
                   "-H", "Forwarded: for=1.2.3.4")
    assert json.loads(p.stdout)["device"] == "d"
    e = origin.one()
    assert (e["uri"], e["device"], e["tenant"], e["forwarded"]) == ("/x?y=1", "d", "t",
                                                                    "for=1.2.3.4")
    assert e["cert_verified"] == ""


def test_nginx_sink_hashes_uploads(origin, pyorigin, tmp_path):
    f = tmp_path / "up.bin"
    f.write_bytes(bytes(range(256)) * 4000)
    import hashlib
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        p = curl_plain(f"{origin.url}/sink", "--data-binary", f"@{f}", *extra)
        got = json.loads(p.stdout)
        assert (got["sha256"], got["length"]) == (want, 1024000), p


def test_nginx_204_and_static(origin):
    p = curl_plain(f"{origin.url}/204", "-o", "/dev/null", "-w", "%{http_code}")
    assert p.stdout == "204"
    p = curl_plain(f"{origin.url}/static/small.txt")
    assert p.stdout == "small static file\n"


def raw_exchange(port, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def test_pyorigin_behaviours(pyorigin):
    out = raw_exchange(pyorigin.port, b"GET /malformed?kind=clte HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in out and b"Content-Length: 5" in out
    out = raw_exchange(pyorigin.port, b"GET /chunked HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: close\r\n\r\n")
    assert out.endswith(b"0\r\n\r\n")
    try:
        out = raw_exchange(pyorigin.port, b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
    except ConnectionResetError:
        out = b""
    assert out == b""
    out = raw_exchange(pyorigin.port, b"POST /sink HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert b'"length": 3' in out
    reqs = pyorigin.requests()
    assert [r.path for r in reqs] == ["/malformed", "/chunked", "/reset", "/sink"]
    assert reqs[-1].complete and reqs[-1].chunked
