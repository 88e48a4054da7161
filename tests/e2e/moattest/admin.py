"""The control plane from the outside: an admin API client (http.client, bearer token), a
moatctl runner, devices enrolled through the API or moatctl that connect with curl or Python
ssl, and a moatd shared by a whole test module.

    api = Api(m)                          # the operator token of m (data_dir/operator.token)
    r = api.post("/tenants", {...})       # r.status, r.json, r.header("allow"), r.body
    t = create_tenant(api, "acme", "acme.test", origin.url)
    dev = enroll(api, "acme", "cam-0001", tmp_path, model="cam-x")   # factory mode
    dev.curl(m, "/x").status;  with dev.conn(m) as c: c.request("GET", "/"); c.response()
    rc, out, err = moatctl(m, "tenant", "list")
"""

import contextlib
import http.client
import json
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from .client import CURL, ConnectionClosed, CurlResult, HTTPConn
from .moatd import Moatd
from .tcp import TlsDevice
from .util import run, wait_until

OPENSSL = "openssl"
MIB = 1024 * 1024
TOKEN_RE = re.compile(r"moat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")
PRIVATE_KEY_RE = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")

# moatctl's exit codes (docs/moatctl.md)
EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4
EXIT_AUTH, EXIT_INVALID, EXIT_SERVER, EXIT_CONNECT = 5, 6, 7, 8


# ---------------------------------------------------------------------------------------------
# the API

class ApiResponse:
    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body  # bytes

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def json(self):
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"{self.method} {self.path}: the answer is not JSON: "
                                 f"{self!r}") from None

    def __repr__(self):
        return (f"<{self.method} {self.path} -> {self.status} {dict(self.headers)} "
                f"body={self.body[:600]!r}>")


def _v1(path):
    """Paths are given relative to /v1 ("/tenants") unless they already start with it."""
    if path == "/v1" or path.startswith(("/v1/", "/v1?")):
        return path
    return "/v1" + path


class Api:
    """An admin API client with one bearer token (None: no Authorization header).

    Every call opens a fresh connection: a test that counts failed authentications or reads
    errors must not depend on a connection the server may have closed after an error."""

    def __init__(self, m, token="operator", timeout=10):
        self.m = m
        self.host = "127.0.0.1"
        self.port = m.admin_port
        self.token = m.operator_token() if token == "operator" else token
        self.timeout = timeout

    def with_token(self, token):
        return Api(self.m, token, self.timeout)

    def request(self, method, path, body=None, *, headers=None, raw=None, content_type=True,
                token="default", absolute=False):
        """One request. body: a JSON value (serialised); raw: bytes sent as they are.
        content_type=False leaves the Content-Type header out; absolute=True sends path as
        it is (for paths outside /v1)."""
        target = path if absolute else _v1(path)
        hdrs = {}
        tok = self.token if token == "default" else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, target, body=data, headers=hdrs)
            r = conn.getresponse()
            payload = r.read()
            return ApiResponse(method, target, r.status, r.getheaders(), payload)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- expectations -----------------------------------------------------------------------

    def ok(self, method, path, body=None, status=None, **kw):
        """A request that must succeed (2xx, or exactly `status`); returns its JSON."""
        r = self.request(method, path, body, **kw)
        if status is None:
            assert 200 <= r.status < 300, f"expected success, got {r!r}"
        else:
            assert r.status == status, f"expected {status}, got {r!r}"
        return r.json


def assert_api_error(r, status, code=None):
    """r is an API error: the status, and the contract's body {"error", "detail", ...}."""
    assert r.status == status, f"expected {status}{' ' + code if code else ''}, got {r!r}"
    ctype = (r.header("content-type") or "").split(";")[0].strip()
    assert ctype == "application/json", f"error answer with Content-Type {ctype!r}: {r!r}"
    doc = r.json
    assert isinstance(doc, dict), f"error body is not an object: {r!r}"
    assert isinstance(doc.get("error"), str) and doc["error"], f"no 'error' in {doc}"
    assert isinstance(doc.get("detail"), str) and doc["detail"], f"no 'detail' in {doc}"
    if code is not None:
        assert doc["error"] == code, f"expected error {code!r}, got {doc}"
    return doc


def raw_admin(m, data, timeout=5):
    """Sends bytes as they are to the admin port; returns what came back until EOF (or until
    `timeout` passes without data)."""
    s = socket.create_connection(("127.0.0.1", m.admin_port), timeout=timeout)
    try:
        s.sendall(data)
        out = bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        s.close()


def parse_raw_response(data):
    """(status, {lower-case header: value}, body) of the first response in data."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    mstat = re.match(r"HTTP/1\.[01] (\d{3})", lines[0]) if lines else None
    if not mstat:
        raise AssertionError(f"no HTTP response: {data[:300]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", len(body)))
    return int(mstat.group(1)), headers, body[:n]


# ---------------------------------------------------------------------------------------------
# tenants and devices

def write_pem(path, text):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def create_tenant(api, name, hosts, origin=None, tcp_origin=None, **extra):
    """POST /v1/tenants (must answer 201); returns the tenant JSON."""
    if isinstance(hosts, str):
        hosts = [hosts]
    body = {"name": name, "hosts": hosts}
    if origin is not None:
        body["origin"] = origin
    if tcp_origin is not None:
        body["tcp_origin"] = tcp_origin
    body.update(extra)
    return api.ok("POST", "/tenants", body, status=201)


class Device:
    """An enrolled device: its certificate and key files, the device CA that issued it, the
    server CA its tenant's edge certificate chains to, and the SNI it connects with."""

    def __init__(self, id, host, cert, key, server_ca, ca=None, doc=None):
        self.id = id
        self.host = host
        self.cert = pathlib.Path(cert)
        self.key = pathlib.Path(key)
        self.server_ca = pathlib.Path(server_ca)
        self.ca = pathlib.Path(ca) if ca else None
        self.doc = doc  # the enroll/renew answer, if it came through the API

    @classmethod
    def from_dir(cls, directory, id, host, key=None):
        """The files moatctl device enroll/renew --out DIR writes."""
        d = pathlib.Path(directory)
        return cls(id, host, d / f"{id}.crt", key or d / f"{id}.key", d / "server-ca.crt",
                   d / "ca.crt")

    def fingerprint(self):
        out = run([OPENSSL, "x509", "-in", str(self.cert), "-noout", "-fingerprint",
                   "-sha256"]).stdout
        return out.strip().split("=", 1)[1].replace(":", "").lower()

    def serial(self):
        out = run([OPENSSL, "x509", "-in", str(self.cert), "-noout", "-serial"]).stdout
        return out.strip().split("=", 1)[1].upper()

    def subject_cn(self):
        out = run([OPENSSL, "x509", "-in", str(self.cert), "-noout", "-subject",
                   "-nameopt", "multiline"]).stdout
        mcn = re.search(r"commonName\s*=\s*(.+)", out)
        return mcn.group(1).strip() if mcn else None

    def ctx(self, with_cert=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.server_ca))
        if with_cert:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def conn(self, m, timeout=5):
        """A TLS connection (handshake done) to moatd m's HTTP listener, SNI self.host."""
        return DeviceConn(m, self, timeout=timeout)

    def tcp(self, m, listener="tcp", timeout=5):
        """A TLS device connection to TCP listener `listener` of m."""
        return TlsDevice(m.listener_port(listener), pki=m.pki, cert=None, host=m.host,
                         server_hostname=self.host, ctx=self.ctx(), timeout=timeout)

    def curl(self, m, path="/", **kw):
        return device_curl(m, self.host, path, cert=self.cert, key=self.key,
                           cacert=self.server_ca, **kw)

    def request(self, m, path="/", method="GET", headers=(), body=b"", timeout=5):
        """One request on a fresh connection: the Response, or the exception that stopped
        it (a refused handshake, a close without an answer)."""
        try:
            with self.conn(m, timeout=timeout) as c:
                c.request(method, path, headers=list(headers) + ["Connection: close"],
                          body=body)
                r = c.response_or_close(timeout)
                return r if r is not None else ConnectionClosed("closed without an answer")
        except (OSError, ssl.SSLError, ConnectionClosed, ValueError) as e:
            return e

    def __repr__(self):
        return f"<Device {self.id}@{self.host}>"


class DeviceConn(HTTPConn):
    """HTTPConn with the device's own TLS context, to its tenant's host."""

    def __init__(self, m, device, timeout=5):
        self.device = device
        super().__init__(m, host=device.host, ctx=device.ctx(), timeout=timeout)

    def request(self, method="GET", path="/", host=None, headers=(), body=b""):
        super().request(method, path, host=host or self.device.host, headers=headers, body=body)

    def get(self, path, headers=()):
        """One keep-alive request and its response (ConnectionClosed if moatd closed)."""
        self.request("GET", path, headers=headers)
        return self.response()


def device_curl(m, host, path="/", *, cert=None, key=None, cacert=None, method=None,
                headers=(), timeout=10, extra=()):
    """curl to m's HTTP listener with SNI/Host `host`; never raises on HTTP or TLS failure."""
    args = [CURL, "-sS", "--http1.1", "--resolve", f"{host}:{m.port}:127.0.0.1",
            "--max-time", str(timeout), "--write-out", "%{json}\\n"]
    if cacert is not None:
        args += ["--cacert", str(cacert)]
    if cert is not None:
        args += ["--cert", str(cert), "--key", str(key)]
    if method:
        args += ["-X", method]
    for h in headers:
        args += ["-H", h]
    out_body = m.dir / f"curl-{os.getpid()}-{time.monotonic_ns()}.out"
    hdr_file = out_body.with_suffix(".hdr")
    args += ["-D", str(hdr_file), "-o", str(out_body)] + list(extra)
    args.append(f"https://{host}:{m.port}{path}")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)
    transfers = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                transfers.append(json.loads(line))
            except ValueError:
                pass
    body = out_body.read_bytes().decode("latin-1") if out_body.exists() else ""
    headers_text = hdr_file.read_text(errors="replace") if hdr_file.exists() else ""
    for f in (out_body, hdr_file):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    return CurlResult(proc, body, headers_text, transfers)


def enroll(api, tenant, device_id, directory, csr_key=None, **fields):
    """POST /v1/tenants/{t}/devices (factory mode, or from a CSR made with openssl for
    csr_key=True); writes the files into directory and returns the Device."""
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    body = {"id": device_id}
    body.update(fields)
    key = None
    if csr_key:
        key, csr = make_csr(d, device_id)
        body["csr"] = csr.read_text()
    doc = api.ok("POST", f"/tenants/{tenant}/devices", body, status=201)
    if key is None:
        assert isinstance(doc.get("key"), str) and PRIVATE_KEY_RE.search(doc["key"].encode()), \
            f"factory-mode enroll returned no private key: {doc}"
        key = write_pem(d / f"{device_id}.key", doc["key"])
        os.chmod(key, 0o600)
    cert = write_pem(d / f"{device_id}.crt", doc["certificate"])
    ca = write_pem(d / "ca.crt", doc["ca"])
    server_ca = write_pem(d / "server-ca.crt", doc["server_ca"])
    host = tenant_host(api, tenant)
    return Device(device_id, host, cert, key, server_ca, ca, doc)


def tenant_host(api, tenant):
    t = api.ok("GET", f"/tenants/{tenant}")
    return t["hosts"][0].lstrip("*.")


def make_csr(directory, cn, name=None):
    """An ECDSA P-256 key and a PKCS#10 request with CN=cn, made with `openssl req`."""
    d = pathlib.Path(directory)
    name = name or cn
    key, csr = d / f"{name}.key", d / f"{name}.csr"
    run([OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}"])
    return key, csr


# ---------------------------------------------------------------------------------------------
# moatctl

class CtlResult(tuple):
    """(rc, stdout, stderr), with names."""

    def __new__(cls, rc, stdout, stderr, args):
        self = super().__new__(cls, (rc, stdout, stderr))
        self.args_ = args
        return self

    rc = property(lambda self: self[0])
    stdout = property(lambda self: self[1])
    stderr = property(lambda self: self[2])

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"moatctl --json printed no JSON: {self!r}") from None

    def __repr__(self):
        return (f"<moatctl {' '.join(self.args_)} rc={self.rc} stdout={self.stdout[-1500:]!r} "
                f"stderr={self.stderr[-1500:]!r}>")


def moatctl_binary():
    path = os.environ.get("MOATCTL")
    if not path:
        pytest.fail("MOATCTL is not set: run `make e2e`, or set MOATCTL to the absolute path "
                    "of the moatctl binary (e.g. MOATCTL=$PWD/build/release/moatctl)",
                    pytrace=False)
    path = os.path.abspath(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail(f"MOATCTL={path} is not an executable file (build it: make)",
                    pytrace=False)
    return path


def server_of(m):
    """The --server value for moatd m: its admin address without /v1."""
    return f"http://127.0.0.1:{m.admin_port}"


def moatctl(m, *args, token="operator", server=None, input=None, timeout=30, env=None,
            json_out=False):
    """Runs moatctl against m's admin API (token: "operator" for m's operator token, None for
    none, or a token string). The environment is scrubbed of MOAT_* and HOME points to an
    empty directory, so no config file of the user's can change the outcome."""
    binary = moatctl_binary()
    argv = [binary]
    if server is not False:
        argv += ["--server", server or server_of(m)]
    if token == "operator":
        token = m.operator_token()
    if token is not None:
        argv += ["--token", token]
    if json_out:
        argv.append("--json")
    argv += [str(a) for a in args]
    home = pathlib.Path(m.dir) / "moatctl-home"
    home.mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MOAT_")}
    full_env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    full_env.pop("MOATD", None)
    full_env.update(env or {})
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, env=full_env)
    return CtlResult(proc.returncode, proc.stdout, proc.stderr, argv[1:])


def ctl_ok(m, *args, **kw):
    r = moatctl(m, *args, **kw)
    assert r.rc == 0, f"moatctl failed: {r!r}"
    return r


# ---------------------------------------------------------------------------------------------
# timing

def within(predicate, limit=1.0, what="condition", grace=3.0):
    """Polls predicate() (every 20 ms) and returns the seconds it took to become true.
    Raises if it is not true after limit + grace seconds; the caller asserts the time is
    below `limit` (so that a slow change is reported with its real duration)."""
    t0 = time.monotonic()
    try:
        wait_until(predicate, limit + grace, interval=0.02, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: still not the case {limit + grace:.1f}s later") from None
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# a moatd shared by a test module

@contextlib.contextmanager
def shared_moatd(binary, workdir, pki, origin_url, **configure):
    """Starts a moatd (Moatd.configure keywords) for a whole module; at the end stops it with
    SIGTERM and requires exit status 0, no death on the way and no sanitizer report."""
    m = Moatd(binary, workdir, pki, origin_url)
    m.configure(**configure)
    m.start()
    try:
        yield m
    finally:
        problems = []
        if m.proc is not None and m.proc.poll() is not None and not m.exit_awaited:
            problems.append(f"the shared moatd died during the module with status "
                            f"{m.proc.returncode}\n{m.diagnostics()}")
        try:
            rc = m.stop(signal.SIGTERM)
            if rc not in (0, None) and not problems:
                problems.append(f"the shared moatd exited {rc} after SIGTERM\n"
                                f"{m.diagnostics()}")
        except AssertionError as e:
            problems.append(str(e))
        reports = m.sanitizer_reports()
        if reports:
            problems.append(f"sanitizer report in moatd output ({reports})\n"
                            f"{m.stderr_text()[-6000:]}")
        if problems:
            raise AssertionError("\n\n".join(problems))


def unique(prefix):
    """A name no other test of a shared moatd uses: prefix-<counter>."""
    unique.n = getattr(unique, "n", 0) + 1
    return f"{prefix}-{unique.n}"

