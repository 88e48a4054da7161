"""A device's life through moatctl, end to end: a tenant added at run time serves within a
second; devices enrolled in factory mode and from a CSR connect and reach the origin with their
identity; a deleted device's certificate is refused; quarantine (with the tenant's
quarantine_allow paths, normalised), release, revocation that closes every open connection on
every worker (idle keep-alive ones and one in the middle of an upload), TCP listeners; rules
added, switched to dry-run, re-enforced and disabled while a connection stays open, rules on
device metadata, tenant deletion, statistics, renewal, and moatctl's exit codes.

Every test starts its own moatd (workers = 2) and makes its tenant with moatctl. "Within 1 s"
is measured from the moment moatctl (or the API) answered to the first request that shows the
change, polling every 20 ms.
"""

import json
import os
import re
import socket
import ssl
import stat
import time

import pytest

from moattest.admin import (EXIT_AUTH, EXIT_CONFLICT, EXIT_CONNECT, EXIT_INVALID,
                            EXIT_NOT_FOUND, EXIT_USAGE, Api, Device, ctl_ok, make_csr, moatctl,
                            within)
from moattest.client import ConnectionClosed, HTTPConn
from moattest.tcp import Ended
from moattest.util import free_port, run

BLOCK_UNLOCK = 'http.request.uri.path eq "/unlock"'
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def start(moatd, origin_url=None, tcp=False, **kw):
    """A moatd with the default config (a short drain so that teardown is quick even with a
    connection left open), optionally a TCP listener "tcp"; m.api is its operator client."""
    listeners = {"tcp": {"protocol": "tcp"}} if tcp else None
    m = moatd(moat={"drain_timeout": "3s"}, listeners=listeners, **kw)
    m.api = Api(m)
    return m


def add_tenant(m, origin_url, name="acme", host="acme.test", *more):
    r = ctl_ok(m, "tenant", "add", name, "--host", host, "--origin", origin_url, *more)
    return r


def enroll(m, tmp_path, device_id, *opts, tenant="acme", host="acme.test", csr=None,
           ready=True):
    """moatctl device enroll into its own directory; the Device. ready: waits until its
    request to /ready gets a 200, which must take less than a second."""
    out = tmp_path / f"enroll-{tenant}-{device_id}-{time.monotonic_ns()}"
    args = ["device", "enroll", tenant, device_id, "--out", out, *opts]
    key = None
    if csr is not None:
        key, csr_path = csr
        args += ["--csr", csr_path]
    ctl_ok(m, *args)
    dev = Device.from_dir(out, device_id, host, key=key)
    if ready:
        wait_ready(m, dev)
    return dev


def wait_ready(m, dev, path="/ready"):
    took = within(lambda: getattr(dev.request(m, path), "status", None) == 200,
                  what=f"{dev} to get a 200 after its enrollment")
    assert took < 1.0, f"{dev} could connect only {took:.2f}s after its enrollment"


def get_until(conn, path, pred, limit=1.0, what=None):
    """Sends GET path on the SAME open connection (never reconnecting: a close fails the
    test) until pred(response) holds; returns the seconds it took."""
    last = []

    def attempt():
        r = conn.get(path)
        last[:] = [r]
        return pred(r)
    try:
        return within(attempt, limit, what=what or f"GET {path} on the open connection")
    except ConnectionClosed:
        raise AssertionError(f"moatd closed the open connection (last answer: {last})") \
            from None
    except AssertionError as e:
        raise AssertionError(f"{e} (last answer: {last})") from None


def blocked_by(rule):
    def pred(r):
        if r.status != 403:
            return False
        doc = json.loads(r.body)
        return doc.get("error") == "blocked" and doc.get("rule") == rule
    return pred


def status_is(code):
    return lambda r: r.status == code


def refused(dev, m, path="/probe"):
    """True if moatd refuses dev: the handshake fails or the connection ends without an
    answer."""
    r = dev.request(m, path)
    return not hasattr(r, "status")


def closed_within_all(conns, t0, limit=3.0):
    """Waits for every connection to be closed by moatd; returns the seconds from t0 at which
    each was seen closed (None: still open after `limit`)."""
    times = []
    for c in conns:
        left = t0 + limit - time.monotonic()
        times.append(time.monotonic() - t0 if c.closed_within(max(left, 0.01)) else None)
    return times


def json_out(r):
    """What moatctl --json printed, parsed."""
    return r.json()


# ---------------------------------------------------------------------------------------------
# tenants and enrollment

def edge_handshake(m, server_ca, host="acme.test"):
    """A TLS 1.3 handshake without a client certificate that checks the server's certificate
    against server_ca for host: True once moatd presents the tenant's certificate (TLS 1.3
    completes the client's side before the server could refuse the missing certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=server_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    except (ssl.SSLError, OSError):
        return False


def test_tenant_added_at_run_time_serves_within_a_second(moatd, origin, tmp_path):
    m = start(moatd)
    pid = m.pid
    log0 = len(m.log_lines())
    r = ctl_ok(m, "tenant", "add", "acme", "--host", "acme.test", "--origin", origin.url,
               json_out=True)
    server_ca = json_out(r)["server_ca"]
    took = within(lambda: edge_handshake(m, server_ca),
                  what="moatd to present acme.test's certificate")
    assert took < 1.0, f"acme.test's certificate was served only {took:.2f}s later"
    assert "acme" in ctl_ok(m, "tenant", "list").stdout
    dev = enroll(m, tmp_path, "cam-0001", ready=False)
    t0 = time.monotonic()
    took = within(lambda: getattr(dev.request(m, "/first"), "status", None) == 200,
                  what="the new tenant's device to get a 200")
    assert took < 1.0, f"the new tenant served only {took:.2f}s after the enrollment"
    e = origin.wait_for(1)[-1]
    assert (e["tenant"], e["device"], e["uri"]) == ("acme", "cam-0001", "/first"), e
    assert m.pid == pid and m.running
    assert not any(re.search(r"(?i)reload", l) for l in m.log_lines()[log0:]), \
        "a reload was needed"
    # the server certificate is the edge CA's, for acme.test (curl checks the name)
    r = dev.curl(m, "/curl")
    assert r.status == 200, r
    assert time.monotonic() - t0 < 30


def test_enroll_factory_mode_and_from_csr(moatd, pyorigin, tmp_path):
    m = start(moatd)
    add_tenant(m, pyorigin.url)
    f = enroll(m, tmp_path, "cam-0001", "--model", "cam-x", "--firmware", "1.2.0",
               "--tag", "outdoor", "--tag", "batch-7", "--owner", "ops@acme.example")
    # the files moatctl wrote: the key private, the certificate for the id, from ca.crt
    assert stat.S_IMODE(os.stat(f.key).st_mode) == 0o600, oct(os.stat(f.key).st_mode)
    assert f.subject_cn() == "cam-0001"
    v = run(["openssl", "verify", "-CAfile", str(f.ca), str(f.cert)], check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    # from a CSR made with openssl req: no key from the API, none written
    csr_dir = tmp_path / "csr"
    csr_dir.mkdir()
    key, csr = make_csr(csr_dir, "cam-0002")
    c = enroll(m, tmp_path, "cam-0002", csr=(key, csr))
    assert not (c.cert.parent / "cam-0002.key").exists()
    assert c.subject_cn() == "cam-0002"

    for dev in (f, c):
        r = dev.request(m, f"/headers?who={dev.id}")
        assert getattr(r, "status", None) == 200, r
    reqs = {q.query["who"]: q for q in pyorigin.wait_for(2, path="/headers")}
    for dev in (f, c):
        q = reqs[dev.id]
        assert q.header_all("Moat-Tenant") == ["acme"], q.headers
        assert q.header_all("Moat-Device") == [dev.id], q.headers
        assert q.header("Moat-Cert-Verified") == "SUCCESS", q.headers
        assert q.header("Moat-Cert-Sha256") == dev.fingerprint(), q.headers
        assert q.header("Moat-Cert-Serial") == dev.serial(), q.headers
        assert re.fullmatch(r"[0-9a-f]{16}", q.header("Moat-Request-Id") or ""), q.headers

    shown = json_out(ctl_ok(m, "device", "show", "acme", "cam-0001", json_out=True))
    assert (shown["model"], shown["firmware"], shown["owner"], shown["state"]) == \
        ("cam-x", "1.2.0", "ops@acme.example", "active"), shown
    assert shown["tags"] == ["outdoor", "batch-7"], shown
    (cert,) = shown["certificates"]
    assert cert["fingerprint"] == f.fingerprint() and cert["revoked_at"] is None, cert
    assert cert["serial"].upper().lstrip("0") == f.serial().lstrip("0"), (cert, f.serial())

    # an --out directory that already holds the files: refused before anything is sent
    r = moatctl(m, "device", "enroll", "acme", "cam-0001", "--out", f.cert.parent)
    assert r.rc == EXIT_USAGE and "exists" in r.stderr, r


def test_existing_out_files_stop_the_enrollment_before_it_is_sent(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    out = tmp_path / "out"
    out.mkdir()
    (out / "cam-9.crt").write_text("precious\n")
    r = moatctl(m, "device", "enroll", "acme", "cam-9", "--out", out)
    assert r.rc == EXIT_USAGE and "exists" in r.stderr, r
    assert (out / "cam-9.crt").read_text() == "precious\n"
    assert m.api.get("/tenants/acme/devices/cam-9").status == 404, \
        "the device was enrolled although its files could not be written"
    r = moatctl(m, "device", "enroll", "acme", "cam-9", "--out", out, "--force")
    assert r.rc == 0, r
    wait_ready(m, Device.from_dir(out, "cam-9", "acme.test"))
    # one directory for a batch: the tenant's CA files are shared, the device's are not
    r = moatctl(m, "device", "enroll", "acme", "cam-10", "--out", out)
    assert r.rc == 0, r
    wait_ready(m, Device.from_dir(out, "cam-10", "acme.test"))


def test_json_enroll_output_leaves_the_key_to_its_file(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    out = tmp_path / "dev"
    r = ctl_ok(m, "device", "enroll", "acme", "cam-1", "--out", out, json_out=True)
    doc = json_out(r)
    assert "key" not in doc and "PRIVATE KEY" not in r.stdout, r
    assert doc["id"] == "cam-1" and "BEGIN CERTIFICATE" in doc["certificate"], doc
    assert "PRIVATE KEY" in (out / "cam-1.key").read_text()
    wait_ready(m, Device.from_dir(out, "cam-1", "acme.test"))
    r = ctl_ok(m, "device", "renew", "acme", "cam-1", "--out", tmp_path / "renewed",
               json_out=True)
    assert "key" not in json_out(r) and "PRIVATE KEY" not in r.stdout, r
    assert "PRIVATE KEY" in (tmp_path / "renewed" / "cam-1.key").read_text()


def test_deleted_device_is_refused_even_with_a_valid_certificate(moatd, origin, tmp_path):
    """The certificate is signed by the tenant's CA, but the device is no longer registered."""
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    assert dev.request(m, "/before").status == 200
    ctl_ok(m, "device", "rm", "acme", "cam-1")
    took = within(lambda: refused(dev, m, "/poll"), what="the deleted device to be refused")
    assert took < 1.0, f"the deleted device still connected {took:.2f}s later"
    assert moatctl(m, "device", "show", "acme", "cam-1").rc == EXIT_NOT_FOUND
    # the same id enrolled again: the new certificate works, the old one stays refused
    again = enroll(m, tmp_path, "cam-1")
    assert getattr(again.request(m, "/again"), "status", None) == 200
    assert refused(dev, m), "the deleted device's old certificate works again"
    uris = [e["uri"] for e in origin.entries()]
    assert uris.count("/before") == 1 and "/probe" not in uris, uris


def test_tenant_changes_apply_to_open_connections(moatd, origin, pyorigin, tmp_path):
    """A new origin is used from the next request of an open connection; new hosts are served
    (with an edge certificate that names them) and dropped ones are not."""
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    with dev.conn(m) as c:
        assert c.get("/nginx").status == 200
        ctl_ok(m, "tenant", "set", "acme", "--origin", pyorigin.url)
        took = get_until(c, "/headers", lambda r: r.status == 200 and b"py origin" not in r.body
                         and b'"target"' in r.body)
        assert took < 1.0, f"the new origin was used after {took:.2f}s"
    assert pyorigin.wait_for(1, path="/headers")[-1].header("Moat-Device") == "cam-1"

    ctl_ok(m, "tenant", "set", "acme", "--host", "acme.test", "--host", "cams.acme2.test")
    moved = Device(dev.id, "cams.acme2.test", dev.cert, dev.key, dev.server_ca)
    took = within(lambda: getattr(moved.request(m, "/headers"), "status", None) == 200,
                  what="the new host to be served")
    assert took < 1.0, f"the new host was served after {took:.2f}s"
    r = moved.curl(m, "/headers")  # curl checks the certificate's names too
    assert r.status == 200, r
    ctl_ok(m, "tenant", "set", "acme", "--host", "cams.acme2.test")
    took = within(lambda: refused(dev, m, "/poll"), what="the dropped host to be refused")
    assert took < 1.0
    assert getattr(moved.request(m, "/headers"), "status", None) == 200


def test_device_ca_rotation(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    old = enroll(m, tmp_path, "cam-old")
    (ca1,) = m.api.ok("GET", "/tenants/acme/cas")["items"]
    r = ctl_ok(m, "ca", "add", "acme", "--cn", "acme devices 2027", "--days", "400",
               json_out=True)
    ca2 = json_out(r)
    assert ca2["subject"] == "CN=acme devices 2027" and ca2["has_key"], ca2
    new = enroll(m, tmp_path, "cam-new")  # signed by the newest CA that has a key
    issuer = run(["openssl", "x509", "-in", str(new.cert), "-noout", "-issuer"]).stdout
    assert "acme devices 2027" in issuer, issuer
    v = run(["openssl", "verify", "-CAfile", str(old.ca), str(old.cert)], check=False)
    assert v.returncode == 0
    assert getattr(old.request(m, "/old"), "status", None) == 200
    ctl_ok(m, "ca", "rm", "acme", ca1["id"])
    took = within(lambda: refused(old, m, "/poll"),
                  what="a device of the deleted CA to be refused")
    assert took < 1.0, f"a device of the deleted CA still connected after {took:.2f}s"
    assert getattr(new.request(m, "/new"), "status", None) == 200
    r = moatctl(m, "ca", "rm", "acme", ca2["id"])
    assert r.rc == EXIT_CONFLICT, r


def test_enrollment_follows_the_signing_ca_as_cas_come_and_go(moatd, origin, tmp_path):
    """The signing CA is kept parsed between enrollments: adding a newer CA, or deleting the
    one that signed, changes the issuer of the very next enrollment."""
    m = start(moatd)
    add_tenant(m, origin.url)

    def issuer(dev):
        return run(["openssl", "x509", "-in", str(dev.cert), "-noout", "-issuer"]).stdout

    first = enroll(m, tmp_path, "cam-1")
    (ca1,) = m.api.ok("GET", "/tenants/acme/cas")["items"]
    assert ca1["subject"].split("=", 1)[1] in issuer(first)
    ca2 = json_out(ctl_ok(m, "ca", "add", "acme", "--cn", "acme devices B", json_out=True))
    assert "acme devices B" in issuer(enroll(m, tmp_path, "cam-2"))
    ctl_ok(m, "ca", "rm", "acme", ca2["id"])
    third = enroll(m, tmp_path, "cam-3")
    assert "acme devices B" not in issuer(third)
    v = run(["openssl", "verify", "-CAfile", str(first.ca), str(third.cert)], check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    assert getattr(third.request(m, "/after"), "status", None) == 200


# ---------------------------------------------------------------------------------------------
# quarantine, release, revocation

def test_quarantine_allows_only_the_firmware_paths_then_release(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    ctl_ok(m, "tenant", "set", "acme", "--quarantine-allow", "/firmware/")
    t = m.api.ok("GET", "/tenants/acme")
    assert t["quarantine_allow"] == ["/firmware/"], t
    dev = enroll(m, tmp_path, "cam-1")
    other = enroll(m, tmp_path, "cam-2")
    with dev.conn(m) as c:
        assert c.get("/before").status == 200
        ctl_ok(m, "device", "quarantine", "acme", "cam-1")
        took = get_until(c, "/poll", status_is(403))
        assert took < 1.0, f"quarantine applied to the open connection after {took:.2f}s"
    assert json_out(ctl_ok(m, "device", "show", "acme", "cam-1",
                           json_out=True))["state"] == "quarantined"

    refused_paths = ["/status", "/", "/firmwarex", "/firmware", "/unlock",
                     "/firmware/../unlock", "/firmware/%2e%2e/unlock",
                     "/firmware/..%2Funlock", "/x/firmware/v2.bin", "/FIRMWARE/v2.bin"]
    problems = []
    for path in refused_paths:
        r = dev.request(m, path)
        if getattr(r, "status", None) != 403:
            problems.append(f"{path}: expected 403, got {r!r}")
            continue
        doc = json.loads(r.body)
        if doc.get("error") != "quarantined":
            problems.append(f"{path}: body {doc}")
        if (r.header("content-type") or "").split(";")[0] != "application/json":
            problems.append(f"{path}: Content-Type {r.header('content-type')}")
    r = dev.request(m, "/status", method="POST", body=b"x" * 1000)
    if getattr(r, "status", None) != 403:
        problems.append(f"POST /status: {r!r}")
    for path in ("/firmware/v2.bin", "/firmware/", "/firmware/a/../v3.bin"):
        r = dev.request(m, path)
        if getattr(r, "status", None) != 200:
            problems.append(f"{path} (allowed): expected 200, got {r!r}")
    # the other device of the tenant is not concerned
    if getattr(other.request(m, "/cam-2-status"), "status", None) != 200:
        problems.append("cam-2 was refused")
    assert not problems, "\n".join(problems)
    time.sleep(0.3)
    seen = [e["uri"] for e in origin.entries()
            if e["device"] == "cam-1" and e["uri"] not in ("/poll", "/ready")]
    assert len(seen) == 4 and {"/before", "/firmware/v2.bin", "/firmware/"} <= set(seen), \
        f"the origin saw {seen}"

    ctl_ok(m, "device", "release", "acme", "cam-1")
    took = within(lambda: getattr(dev.request(m, "/status"), "status", None) == 200,
                  what="the released device to get a 200")
    assert took < 1.0, f"release applied after {took:.2f}s"
    assert json_out(ctl_ok(m, "device", "show", "acme", "cam-1",
                           json_out=True))["state"] == "active"


def test_revoke_closes_every_open_connection_on_every_worker(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    bystander = enroll(m, tmp_path, "cam-2")
    conns = []
    try:
        # 12 idle keep-alive connections, one request each: with two workers taking
        # connections by SO_REUSEPORT, both hold some (all on one: 1 in 2048)
        for i in range(12):
            c = dev.conn(m)
            conns.append(c)
            r = c.get(f"/ka-{i}")
            assert r.status == 200, r
        with bystander.conn(m) as b:
            assert b.get("/bystander-1").status == 200
            r = moatctl(m, "device", "revoke", "acme", "cam-1")
            t0 = time.monotonic()
            assert r.rc == 0, r
            times = closed_within_all(conns, t0)
            slow = [(i, t) for i, t in enumerate(times) if t is None or t >= 1.0]
            assert not slow, f"connections still open 1 s after the revocation " \
                             f"(index, seconds seen closed): {slow}; all: {times}"
            # the device of the same tenant that was not revoked keeps its connection
            assert b.get("/bystander-2").status == 200
    finally:
        for c in conns:
            c.close()
    assert refused(dev, m), "a revoked device completed a request"
    shown = json_out(ctl_ok(m, "device", "show", "acme", "cam-1", json_out=True))
    assert shown["state"] == "revoked", shown
    assert all(c["revoked_at"] for c in shown["certificates"]), shown
    # final: no way back
    assert moatctl(m, "device", "release", "acme", "cam-1").rc == EXIT_CONFLICT
    assert moatctl(m, "device", "quarantine", "acme", "cam-1").rc == EXIT_CONFLICT
    r = moatctl(m, "device", "renew", "acme", "cam-1", "--out", tmp_path / "renew")
    assert r.rc == EXIT_CONFLICT, r


def resumable_session(m, dev, tls):
    """A full handshake and one request on `tls` ("1.2"/"1.3"); the session to resume."""
    ctx = dev.ctx()
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, f"TLSv{tls[0]}_{tls[2]}")
    with socket.create_connection(("127.0.0.1", m.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=dev.host) as s:
            s.sendall(b"GET /session HTTP/1.1\r\nHost: " + dev.host.encode()
                      + b"\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            return ctx, s.session


def resumed_request(m, dev, ctx, session):
    """(resumed?, the status line or the error) of a request on a resumed session."""
    try:
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=dev.host, session=session) as s:
                resumed = s.session_reused
                s.sendall(b"GET /resumed HTTP/1.1\r\nHost: " + dev.host.encode()
                          + b"\r\nConnection: close\r\n\r\n")
                data = s.recv(65536)
                return resumed, data.split(b"\r\n", 1)[0] if data else b"closed"
    except (ssl.SSLError, OSError) as e:
        return None, repr(e)


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_revoked_or_deleted_device_cannot_resume_a_session(moatd, origin, tmp_path, tls):
    """A resumed TLS session skips the certificate: moatd must still know whose it was."""
    m = start(moatd)
    add_tenant(m, origin.url)
    problems = []
    for action in ("revoke", "rm"):
        dev = enroll(m, tmp_path, f"cam-{action}")
        ctx, session = resumable_session(m, dev, tls)
        resumed, status = resumed_request(m, dev, ctx, session)
        assert resumed and status == b"HTTP/1.1 200 OK", \
            f"moatd does not resume TLS {tls} sessions at all ({resumed}, {status})"
        ctx, session = resumable_session(m, dev, tls)
        ctl_ok(m, "device", action, "acme", dev.id)
        within(lambda: refused(dev, m, "/poll"), what="a full handshake to be refused")
        resumed, status = resumed_request(m, dev, ctx, session)
        if status.startswith(b"HTTP/1.1 2"):
            problems.append(f"after `device {action}`: a resumed TLS {tls} session "
                            f"(resumed={resumed}) still got {status!r}")
    assert not problems, "\n".join(problems)
    time.sleep(0.2)
    resumed_at_origin = [e for e in origin.entries() if e["uri"] == "/resumed"]
    assert len(resumed_at_origin) == 2, resumed_at_origin  # the two checks before the action


def test_revoke_closes_a_connection_in_the_middle_of_an_upload(moatd, origin, pyorigin,
                                                                tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    with dev.conn(m) as c:
        total = 50 * 1024 * 1024
        c.send(f"POST /sink HTTP/1.1\r\nHost: acme.test\r\nContent-Type: "
               f"application/octet-stream\r\nContent-Length: {total}\r\n\r\n".encode())
        c.send(os.urandom(256 * 1024))
        pyorigin.wait_for(1, path="/sink")  # the upload is on its way to the origin
        c.send(os.urandom(16 * 1024))
        m.api.ok("POST", "/tenants/acme/devices/cam-1/revoke")
        t0 = time.monotonic()
        closed = False
        # keep trickling the body: moatd must close the connection anyway
        while time.monotonic() - t0 < 3:
            try:
                c.send(os.urandom(1024))
            except (OSError, ssl.SSLError):
                closed = True
                break
            if c.closed_within(0.05):
                closed = True
                break
        took = time.monotonic() - t0
    assert closed and took < 1.0, f"the uploading connection was not closed within 1 s " \
                                  f"(closed={closed}, {took:.2f}s)"
    assert refused(dev, m)


def test_tcp_quarantine_refuses_new_connections(moatd, origin, tcp_echo, tmp_path):
    m = start(moatd, tcp=True)
    add_tenant(m, origin.url, "acme", "acme.test", "--tcp-origin", tcp_echo.url)
    dev = enroll(m, tmp_path, "cam-1")
    other = enroll(m, tmp_path, "cam-2")

    def echoes(d):
        try:
            with d.tcp(m) as t:
                t.sendall(b"ping")
                return t.recv_exact(4, timeout=3) == b"ping"
        except (OSError, ssl.SSLError, Ended, TimeoutError, AssertionError, ValueError):
            return False
    assert echoes(dev) and echoes(other)
    ctl_ok(m, "device", "quarantine", "acme", "cam-1")
    took = within(lambda: not echoes(dev), what="the quarantined device's TCP to be refused")
    assert took < 1.0, f"TCP still open to the quarantined device after {took:.2f}s"
    assert echoes(other), "the active device's TCP connection was refused"
    # HTTP on the other listener still reaches the firmware paths only (none here): 403
    r = dev.request(m, "/over-http")
    assert getattr(r, "status", None) == 403, r
    ctl_ok(m, "device", "release", "acme", "cam-1")
    took = within(lambda: echoes(dev), what="the released device's TCP to work")
    assert took < 1.0


# ---------------------------------------------------------------------------------------------
# rules

def test_rule_changes_apply_to_an_open_connection(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    with dev.conn(m) as c:
        assert c.get("/unlock").status == 200
        r = ctl_ok(m, "rule", "add", "acme", "--name", "block-unlock", "--expr", BLOCK_UNLOCK,
                   "--action", "block")
        took = get_until(c, "/unlock", blocked_by("block-unlock"))
        assert took < 1.0, f"the new rule applied to the open connection after {took:.2f}s"
        assert c.get("/other").status == 200

        ctl_ok(m, "rule", "set", "acme", "block-unlock", "--mode", "dry-run")
        took = get_until(c, "/unlock", status_is(200))
        assert took < 1.0, f"dry-run applied after {took:.2f}s"

        ctl_ok(m, "rule", "set", "acme", "block-unlock", "--mode", "enforce")
        took = get_until(c, "/unlock", blocked_by("block-unlock"))
        assert took < 1.0, f"enforce applied after {took:.2f}s"

        ctl_ok(m, "rule", "disable", "acme", "block-unlock")
        took = get_until(c, "/unlock", status_is(200))
        assert took < 1.0, f"disable applied after {took:.2f}s"
        ctl_ok(m, "rule", "enable", "acme", "block-unlock")
        took = get_until(c, "/unlock", blocked_by("block-unlock"))
        assert took < 1.0, f"enable applied after {took:.2f}s"
        ctl_ok(m, "rule", "rm", "acme", "block-unlock")
        took = get_until(c, "/unlock", status_is(200))
        assert took < 1.0, f"the deletion applied after {took:.2f}s"
        assert c.get("/last").status == 200


@pytest.mark.deadline(120)
def test_a_change_to_a_large_rule_set_applies_at_once_then_completes(moatd, origin, tmp_path):
    """Past 200 rules a change is published first without the Hyperscan prefilter (at once),
    then with the set compiled whole on another thread; both decide the same, and the hit
    counters carry over."""
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    for i in range(210):
        m.api.ok("POST", "/tenants/acme/rules",
                 {"id": f"bulk-{i}", "name": f"bulk {i}",
                  "expr": f'http.request.uri.path contains "/bulk-{i}/" or '
                          f'http.request.uri.query matches "x{i}=[0-9]+"'},
                 status=201)
    with dev.conn(m) as c:
        assert c.get("/large").status == 200
        start_line = len(m.log_lines())
        ctl_ok(m, "rule", "add", "acme", "--name", "block-large", "--expr",
               'http.request.uri.path eq "/large"')
        took = get_until(c, "/large", blocked_by("block-large"))
        assert took < 1.0, f"the rule applied to the open connection after {took:.2f}s"
        m.wait_log(r"store changes applied: generation \d+ .*completing large rule sets",
                   timeout=5, start=start_line)
        # the complete set follows: a generation without the note
        m.wait_log(r"store changes applied: generation \d+ \(built in [0-9.]+ ms\)$",
                   timeout=30, start=start_line)
        assert blocked_by("block-large")(c.get("/large"))
        assert blocked_by("bulk-7")(c.get("/bulk-7/x"))
        assert blocked_by("bulk-9")(c.get("/q?x9=12"))
        assert c.get("/bulk-7").status == 200
        assert c.get("/q?x9=ab").status == 200
    hits = m.api.ok("GET", "/tenants/acme/rules/block-large/stats")["hits"]
    assert hits["enforce"] >= 2, hits  # counted before and after the complete set


def test_rule_hits_are_counted_in_dry_run(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    ctl_ok(m, "rule", "add", "acme", "--name", "watch-unlock", "--expr", BLOCK_UNLOCK,
           "--mode", "dry-run")

    def rule_stats():
        return json_out(ctl_ok(m, "stats", "acme", "--rule", "watch-unlock", json_out=True))
    with dev.conn(m) as c:
        # the rule is live once a request counts
        within(lambda: c.get("/unlock").status == 200 and rule_stats()["hits"]["dry_run"] > 0,
               2.0, what="a first dry-run hit")
        base = rule_stats()["hits"]["dry_run"]
        for _ in range(3):
            assert c.get("/unlock").status == 200
            assert c.get("/not-unlock").status == 200
    within(lambda: rule_stats()["hits"]["dry_run"] == base + 3, 1.0, what="3 more hits")
    s = rule_stats()
    assert s["rule"] == "watch-unlock" and s["hits"] == {"enforce": 0, "dry_run": base + 3}, s
    assert len([e for e in origin.entries() if e["uri"] == "/unlock"]) >= base + 3


def test_rule_validate_shows_the_error_with_a_caret(moatd, origin):
    m = start(moatd)
    add_tenant(m, origin.url)
    expr = 'http.request.uri.path eq "/a" and http.request.pth == 1'
    r = moatctl(m, "rule", "validate", "acme", "--expr", expr)
    assert r.rc == EXIT_INVALID, r
    text = r.stdout + r.stderr
    assert "http.request.pth" in text, r
    lines = text.splitlines()
    i = next((k for k, l in enumerate(lines) if l.rstrip().endswith(expr)), None)
    assert i is not None and i + 1 < len(lines), f"the expression is not echoed: {r!r}"
    prefix = lines[i][: len(lines[i].rstrip()) - len(expr)]
    caret = lines[i + 1]
    col = expr.index("http.request.pth")
    assert caret.rstrip() == prefix + " " * col + "^", f"caret misplaced:\n{lines[i]}\n{caret}"
    ok = moatctl(m, "rule", "validate", "acme", "--expr", BLOCK_UNLOCK)
    assert ok.rc == 0 and "valid" in ok.stdout, ok
    # a rule that does not compile is not added either
    r = moatctl(m, "rule", "add", "acme", "--name", "broken", "--expr", expr)
    assert r.rc == EXIT_INVALID, r
    assert m.api.ok("GET", "/tenants/acme/rules")["items"] == []


def test_device_metadata_drives_rules(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    old = enroll(m, tmp_path, "cam-0001", "--model", "cam-x", "--firmware", "1.2.0")
    new = enroll(m, tmp_path, "cam-0002", "--model", "cam-x", "--firmware", "2.10.0")
    door = enroll(m, tmp_path, "door-1", "--model", "doorbell", "--firmware", "1.0.0")
    bare = enroll(m, tmp_path, "bare-1")
    ctl_ok(m, "rule", "add", "acme", "--name", "old-cam-x", "--id", "old-cam-x", "--expr",
           'device.model eq "cam-x" and device.firmware < "2.0.0"')
    with old.conn(m) as c:
        took = get_until(c, "/api", blocked_by("old-cam-x"))
        assert took < 1.0
        for d in (new, door, bare):
            r = d.request(m, "/api")
            assert getattr(r, "status", None) == 200, (d, r)
        ctl_ok(m, "device", "set", "acme", "cam-0001", "--firmware", "2.1.0")
        took = get_until(c, "/api", status_is(200))
        assert took < 1.0, f"the firmware change applied to the open connection after " \
                           f"{took:.2f}s"
        ctl_ok(m, "device", "set", "acme", "cam-0001", "--firmware", "1.9.9")
        took = get_until(c, "/api", blocked_by("old-cam-x"))
        assert took < 1.0
        ctl_ok(m, "device", "set", "acme", "cam-0001", "--model", "cam-y")
        took = get_until(c, "/api", status_is(200))
        assert took < 1.0


# ---------------------------------------------------------------------------------------------
# tenant deletion, statistics, renewal

def test_tenant_delete_closes_its_connections(moatd, origin, pki, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    conns = []
    try:
        for i in range(6):
            c = dev.conn(m)
            conns.append(c)
            assert c.get(f"/ka-{i}").status == 200
        with HTTPConn(m, cert=pki.dev1) as alpha:
            alpha.request("GET", "/alpha-1")
            assert alpha.response().status == 200
            r = moatctl(m, "tenant", "rm", "acme", "--yes")
            t0 = time.monotonic()
            assert r.rc == 0, r
            times = closed_within_all(conns, t0)
            slow = [(i, t) for i, t in enumerate(times) if t is None or t >= 1.0]
            assert not slow, f"connections of the deleted tenant still open: {slow}"
            # another tenant's connection is untouched
            alpha.request("GET", "/alpha-2")
            assert alpha.response().status == 200
    finally:
        for c in conns:
            c.close()
    assert refused(dev, m)
    # the SNI is unknown now: no handshake at all, even without a client certificate
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", m.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="acme.test") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: acme.test\r\n\r\n")
                if not s.recv(1):
                    raise OSError("closed")
    assert moatctl(m, "tenant", "show", "acme").rc == EXIT_NOT_FOUND
    assert m.api.get("/tenants/acme/devices/cam-1").status == 404


def test_stats_count_requests_blocks_and_connections(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    dev = enroll(m, tmp_path, "cam-1")
    enroll(m, tmp_path, "cam-2", ready=False)
    ctl_ok(m, "rule", "add", "acme", "--name", "block-unlock", "--id", "block-unlock",
           "--expr", BLOCK_UNLOCK)

    def dev_stats(d="cam-1"):
        return json_out(ctl_ok(m, "stats", "acme", "--device", d, json_out=True))
    # what cam-1's /ready requests counted, once its connections are closed
    within(lambda: dev_stats()["connected_now"] == 0, 1.0, what="cam-1 to be disconnected")
    base = dev_stats()["requests"]
    assert base >= 1 and dev_stats()["blocked"] == 0
    with dev.conn(m) as c:
        n = 0  # requests until the rule is live: the last one is the only block
        while True:
            n += 1
            if blocked_by("block-unlock")(c.get("/unlock")):
                break
            assert n < 200, "the rule never applied"
        for i in range(3):
            assert c.get(f"/ok-{i}").status == 200
        n += 3 + base

        def tenant_stats():
            s = json_out(moatctl(m, "stats", "acme", json_out=True))
            return s if (s["requests"], s["blocked"], s["connections_now"]) == (n, 1, 1) \
                else None
        try:
            within(tenant_stats, 1.0, what="the tenant's counters")
        except AssertionError:
            raise AssertionError(f"tenant stats: {moatctl(m, 'stats', 'acme', json_out=True)}")
        s = tenant_stats()
        assert s["tenant"] == "acme" and s["devices"] == 2 and s["devices_connected"] == 1, s
        assert s["bytes_in"] > 0 and s["bytes_out"] > 0, s
        (rs,) = [x for x in s["rules"] if x["id"] == "block-unlock"]
        assert rs["hits"] == {"enforce": 1, "dry_run": 0}, s

        d = json_out(ctl_ok(m, "stats", "acme", "--device", "cam-1", json_out=True))
        assert d["device"] == "cam-1", d
        assert (d["requests"], d["blocked"], d["connected_now"]) == (n, 1, 1), d
        assert d["bytes_in"] > 0 and d["bytes_out"] > 0, d
        assert RFC3339.fullmatch(d["last_seen"] or ""), d
        d2 = json_out(ctl_ok(m, "stats", "acme", "--device", "cam-2", json_out=True))
        assert (d2["requests"], d2["connected_now"], d2["last_seen"]) == (0, 0, None), d2

    def closed():
        d = json_out(ctl_ok(m, "stats", "acme", "--device", "cam-1", json_out=True))
        s = json_out(ctl_ok(m, "stats", "acme", json_out=True))
        return d["connected_now"] == 0 and s["connections_now"] == 0
    within(closed, 1.0, what="connected_now back to 0")
    rs = json_out(ctl_ok(m, "stats", "acme", "--rule", "block-unlock", json_out=True))
    assert rs["hits"]["enforce"] == 1, rs


def test_renew_keeps_the_old_certificate_until_revoke_previous(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    first = enroll(m, tmp_path, "cam-1")
    d2 = tmp_path / "renew-2"
    ctl_ok(m, "device", "renew", "acme", "cam-1", "--out", d2)
    second = Device.from_dir(d2, "cam-1", "acme.test")
    assert second.serial() != first.serial()
    assert second.key.read_text() != first.key.read_text(), "renew made no new key"
    for dev in (first, second):
        r = dev.request(m, "/both")
        assert getattr(r, "status", None) == 200, (dev.cert, r)
    shown = json_out(ctl_ok(m, "device", "show", "acme", "cam-1", json_out=True))
    assert len(shown["certificates"]) == 2, shown
    assert all(c["revoked_at"] is None for c in shown["certificates"]), shown

    # from a CSR, revoking the previous ones
    key, csr = make_csr(tmp_path, "cam-1", name="cam-1-third")
    d3 = tmp_path / "renew-3"
    ctx13, session13 = resumable_session(m, first, "1.3")
    ctx12, session12 = resumable_session(m, second, "1.2")
    with first.conn(m) as open_first:
        assert open_first.get("/open").status == 200
        ctl_ok(m, "device", "renew", "acme", "cam-1", "--csr", csr, "--revoke-previous",
               "--out", d3)
        t0 = time.monotonic()
        third = Device.from_dir(d3, "cam-1", "acme.test", key=key)
        assert not (d3 / "cam-1.key").exists()
        took = within(lambda: refused(first, m) and refused(second, m),
                      what="the previous certificates to be refused")
        assert took < 1.0, f"previous certificates still accepted after {took:.2f}s"
        r = third.request(m, "/third")
        assert getattr(r, "status", None) == 200, r
        # an open connection of a revoked certificate is closed like any revoked one
        assert open_first.closed_within(max(0.05, 1.0 - (time.monotonic() - t0))), \
            "a connection with a revoked certificate stayed open"
    # nor do sessions made with them resume
    for dev, ctx, session in ((first, ctx13, session13), (second, ctx12, session12)):
        resumed, status = resumed_request(m, dev, ctx, session)
        assert not status.startswith(b"HTTP/1.1 2"), \
            f"a session of a revoked certificate resumed ({resumed}) and got {status!r}"
    shown = json_out(ctl_ok(m, "device", "show", "acme", "cam-1", json_out=True))
    assert shown["state"] == "active", shown
    certs = {c["fingerprint"]: c for c in shown["certificates"]}
    assert certs[first.fingerprint()]["revoked_at"] and certs[second.fingerprint()]["revoked_at"]
    assert certs[third.fingerprint()]["revoked_at"] is None, certs


# ---------------------------------------------------------------------------------------------
# moatctl's exit codes

def test_moatctl_exit_codes(moatd, origin, tmp_path):
    m = start(moatd)
    add_tenant(m, origin.url)
    enroll(m, tmp_path, "cam-1")
    ctl_ok(m, "device", "revoke", "acme", "cam-1")
    (ca,) = m.api.ok("GET", "/tenants/acme/cas")["items"]
    cases = [
        ("404 tenant", EXIT_NOT_FOUND, ("tenant", "show", "nope"), {}),
        ("404 device", EXIT_NOT_FOUND, ("device", "show", "acme", "nope"), {}),
        ("404 rule", EXIT_NOT_FOUND, ("rule", "rm", "acme", "nope"), {}),
        ("409 duplicate", EXIT_CONFLICT,
         ("tenant", "add", "acme", "--host", "other.test", "--origin", origin.url), {}),
        ("409 read-only", EXIT_CONFLICT,
         ("tenant", "set", "alpha", "--origin", origin.url), {}),
        ("409 state", EXIT_CONFLICT, ("device", "quarantine", "acme", "cam-1"), {}),
        ("400 bad name", EXIT_INVALID,
         ("tenant", "add", "Bad!", "--host", "bad.test", "--origin", origin.url), {}),
        ("422 rule", EXIT_INVALID, ("rule", "add", "acme", "--name", "x", "--expr", "(("), {}),
        ("401 bad token", EXIT_AUTH, ("tenant", "list"),
         {"token": "moat_0123456789abcdef_" + "A" * 43}),
        ("401 no token", EXIT_AUTH, ("tenant", "list"), {"token": None}),
        ("cannot connect", EXIT_CONNECT, ("tenant", "list"),
         {"server": f"http://127.0.0.1:{free_port()}"}),
        ("usage", EXIT_USAGE, ("device", "show", "acme"), {}),
        ("rm without --yes", EXIT_USAGE, ("tenant", "rm", "acme"), {}),
        ("409 last CA", EXIT_CONFLICT, ("ca", "rm", "acme", ca["id"]), {}),
    ]
    problems = []
    for what, rc, args, kw in cases:
        r = moatctl(m, *args, **kw)
        if r.rc != rc:
            problems.append(f"{what}: expected exit {rc}, got {r!r}")
        elif not r.stderr.strip():
            problems.append(f"{what}: exit {rc} without a message on stderr: {r!r}")
    # 403: a tenant token asking for an operator action
    tok = m.api.ok("POST", "/tokens", {"name": "acme", "tenant": "acme"}, status=201)["token"]
    r = moatctl(m, "tenant", "add", "other", "--host", "other.test", "--origin", origin.url,
                token=tok)
    if r.rc != EXIT_AUTH:
        problems.append(f"403: expected exit {EXIT_AUTH}, got {r!r}")
    assert not problems, "\n".join(problems)
    assert moatctl(m, "health", token=None).rc == 0
    assert m.api.get("/tenants/acme").status == 200, "tenant rm without --yes deleted it"
