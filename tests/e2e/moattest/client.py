"""Device-side clients: curl, `openssl s_client`, and a raw HTTP/1.1-over-TLS socket for bytes
that no well-behaved client would send."""

import json
import re
import socket
import ssl
import subprocess
import time

from .util import run

CURL = "curl"
OPENSSL = "openssl"


# ---------------------------------------------------------------------------------------------
# curl

class CurlResult:
    def __init__(self, proc, body, headers_text, transfers):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.body = body
        self.headers_text = headers_text
        self.transfers = transfers  # one dict per URL: http_code, num_connects, ...
        self.status = transfers[-1]["http_code"] if transfers else 0

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"<curl rc={self.rc} status={self.status} body={self.body[:300]!r} "
                f"stderr={self.stderr[-600:]!r}>")


def curl(moat, path="/", *, host="alpha.test", cert=None, tls=None, urls=None, headers=(),
         data_file=None, method=None, extra=(), timeout=20, body_file=None, connect_host=None):
    """Runs curl against moat with `cert` as the device certificate (None: no certificate).

    tls: None, "1.2" or "1.3" (pinned exactly). urls: several paths fetched on one curl run
    (connection reuse). Returns CurlResult; never raises on HTTP or TLS failure.
    """
    pki = moat.pki
    paths = urls or [path]
    ip = connect_host or moat.host
    resolve = f"{host}:{moat.port}:{ip}" if ":" not in ip else f"{host}:{moat.port}:[{ip}]"
    args = [CURL, "-sS", "--http1.1", "--cacert", str(pki.server_ca.cert),
            "--resolve", resolve, "--max-time", str(timeout),
            "--write-out", "%{json}\\n"]
    if cert is not None:
        args += ["--cert", str(cert.cert), "--key", str(cert.key)]
    if tls == "1.2":
        args += ["--tlsv1.2", "--tls-max", "1.2"]
    elif tls == "1.3":
        args += ["--tlsv1.3", "--tls-max", "1.3"]
    for h in headers:
        args += ["-H", h]
    if data_file is not None:
        args += ["--data-binary", f"@{data_file}"]
    if method:
        args += ["-X", method]
    out_body = body_file or (moat.dir / "curl-body.out")
    hdr_file = moat.dir / "curl-headers.out"
    args += ["-D", str(hdr_file)]
    args += list(extra)
    for i, p in enumerate(paths):
        args += ["-o", str(out_body) if i == len(paths) - 1 else "/dev/null",
                 f"https://{host}:{moat.port}{p}"]
    for f in (out_body, hdr_file):
        try:
            f.unlink()
        except FileNotFoundError:
            pass
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)
    transfers = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                transfers.append(json.loads(line))
            except ValueError:
                pass
    body = out_body.read_bytes().decode("latin-1") if out_body.exists() and not body_file else ""
    headers_text = hdr_file.read_text(errors="replace") if hdr_file.exists() else ""
    return CurlResult(proc, body, headers_text, transfers)


# ---------------------------------------------------------------------------------------------
# openssl s_client

def s_client(moat, *, servername="alpha.test", cert=None, tls="1.3", sess_out=None,
             sess_in=None, request=None, timeout=10, extra=()):
    """Runs `openssl s_client`, sends `request` (default: GET / with Connection: close) and
    reads until the server closes. Returns the CompletedProcess (stdout, stderr as text)."""
    pki = moat.pki
    ip = moat.host if ":" not in moat.host else f"[{moat.host}]"
    args = [OPENSSL, "s_client", "-connect", f"{ip}:{moat.port}", "-CAfile",
            str(pki.server_ca.cert), "-ign_eof"]
    if servername is None:
        args.append("-noservername")
    else:
        args += ["-servername", servername]
    if cert is not None:
        args += ["-cert", str(cert.cert), "-key", str(cert.key)]
    if tls == "1.2":
        args.append("-tls1_2")
    elif tls == "1.3":
        args.append("-tls1_3")
    if sess_out:
        args += ["-sess_out", str(sess_out)]
    if sess_in:
        args += ["-sess_in", str(sess_in)]
    args += list(extra)
    if request is None:
        request = (f"GET /s_client HTTP/1.1\r\nHost: {servername or 'alpha.test'}\r\n"
                   f"Connection: close\r\n\r\n")
    return run(args, input=request, timeout=timeout, check=False)


def s_client_reused(out):
    """'Reused' or 'New' from the session line s_client prints after the handshake."""
    m = re.search(r"^(Reused|New), ", out, re.M)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------
# raw HTTP/1.1 over TLS

def tls_context(pki, cert=None, tls=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.server_ca.cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    if tls == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif tls == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} body={self.body[:300]!r}>"


class ConnectionClosed(Exception):
    pass


class HTTPConn:
    """One TLS connection to moatd with a read buffer, for hand-made requests."""

    def __init__(self, moat, *, host="alpha.test", cert=None, tls=None, timeout=5, sni=True,
                 ctx=None, connect_host=None):
        ctx = ctx or tls_context(moat.pki, cert, tls)
        ip = connect_host or moat.host
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            raw.connect((ip, moat.port))
            if sni:
                self.sock = ctx.wrap_socket(raw, server_hostname=host)
            else:
                ctx.check_hostname = False
                self.sock = ctx.wrap_socket(raw, server_hostname=None)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", host="alpha.test", headers=(), body=b""):
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        for h in headers:
            head += h + "\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        self.send(head.encode() + b"\r\n" + body)

    def _fill(self, timeout=None):
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError,
                BrokenPipeError):
            data = b""
        except ssl.SSLError as e:
            # an alert from the server (e.g. a refused certificate in TLS 1.3) ends the stream
            self.alert = e
            data = b""
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by moatd")
        self.buf += data

    def _read_until(self, marker, cap=1 << 20):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if len(self.buf) > cap:
                raise ValueError("response head too long")
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, head_request=False, interim=False):
        """Reads one response. 1xx responses are skipped unless interim=True."""
        while True:
            raw = self._read_until(b"\r\n\r\n")
            lines = raw[:-4].decode("latin-1").split("\r\n")
            m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
            if not m:
                raise ValueError(f"bad status line {lines[0]!r}")
            status = int(m.group(1))
            headers = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.append((k, v.strip()))
            if 100 <= status < 200 and not interim:
                continue
            break
        resp = Response(status, m.group(2) or "", headers, b"", raw)
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and "chunked" in te.lower():
            body = bytearray()
            while True:
                size = int(self._read_until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n"
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self._read_exact(int(cl))
        else:
            body = bytearray()
            try:
                while True:
                    self._fill()
                    body += self.buf
                    self.buf.clear()
            except ConnectionClosed:
                pass
            body += self.buf
            self.buf.clear()
            resp.body = bytes(body)
        return resp

    def closed_within(self, timeout):
        """True if moatd closes the connection (EOF, reset or alert) within `timeout`;
        any bytes that arrive meanwhile are kept in the buffer."""
        deadline = time.monotonic() + timeout
        if self.eof:
            return True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(timeout=left)
            except ConnectionClosed:
                return True
            except (socket.timeout, TimeoutError):
                return False

    def wait_data(self, timeout):
        """True if application data or the end of the connection arrives within `timeout`
        (TLS records without application data, such as session tickets, do not count)."""
        if self.buf or self.eof:
            return True
        try:
            self._fill(timeout=timeout)
        except ConnectionClosed:
            return True
        except (socket.timeout, TimeoutError):
            return False
        return True

    def response_or_close(self, timeout):
        """The next response, or None if moatd closes the connection without one."""
        old, self.timeout = self.timeout, timeout
        try:
            return self.response()
        except ConnectionClosed:
            if self.buf:
                raise ValueError(f"connection closed mid-response: {bytes(self.buf)!r}")
            return None
        finally:
            self.timeout = old


def try_request(moat, path="/", **kw):
    """One GET on a fresh connection: the Response, or the exception that stopped it."""
    try:
        with HTTPConn(moat, **kw) as c:
            c.request("GET", path, host=kw.get("host", "alpha.test"),
                      headers=["Connection: close"])
            return c.response()
    except (OSError, ssl.SSLError, ConnectionClosed, ValueError) as e:
        return e
