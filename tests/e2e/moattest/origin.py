"""The origins behind moatd.

NginxOrigin: Debian's nginx as a foreground process with its own prefix, logging every request
as one JSON line with the headers moatd adds or must remove. Locations:
    /               200 with a small JSON body echoing the identity headers
    = /204          204 No Content
    /static/        files in <prefix>/www (small.txt, big.bin once the stream tests make it)
    /sink           proxied, unbuffered, to the python origin's /sink (hashes the body)
and an https server (certificate from the test PKI's server CA) with the same "/".

PyOrigin: a raw socket HTTP/1.1 server in threads for what nginx cannot do: slow, malformed,
reset responses, chunked and close-delimited responses, and a sink that hashes uploads while
recording exactly what arrived (Content-Length or chunked, byte counts).
"""

import hashlib
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse

from .util import free_port, wait_until, listening_ports

NGINX = "/usr/sbin/nginx"

LOG_FIELDS = {
    "time": "$time_iso8601",
    "scheme": "$scheme",
    "msec": "$msec",
    "request_time": "$request_time",
    "request": "$request",
    "method": "$request_method",
    "uri": "$request_uri",
    "protocol": "$server_protocol",
    "status": "$status",
    "host": "$http_host",
    "device": "$http_moat_device",
    "tenant": "$http_moat_tenant",
    "cert_sha256": "$http_moat_cert_sha256",
    "cert_serial": "$http_moat_cert_serial",
    "cert_verified": "$http_moat_cert_verified",
    "request_id": "$http_moat_request_id",
    "forwarded": "$http_forwarded",
    "x_forwarded_for": "$http_x_forwarded_for",
    "x_forwarded_proto": "$http_x_forwarded_proto",
    "x_forwarded_host": "$http_x_forwarded_host",
    "x_real_ip": "$http_x_real_ip",
    "x_client_cert": "$http_x_client_cert",
    "x_secret": "$http_x_secret",
    "connection_hdr": "$http_connection",
    "keep_alive_hdr": "$http_keep_alive",
    "te": "$http_te",
    "upgrade": "$http_upgrade",
    "expect": "$http_expect",
    "transfer_encoding": "$http_transfer_encoding",
    "content_length": "$content_length",
    "request_length": "$request_length",
    "body_bytes_sent": "$body_bytes_sent",
    "connection": "$connection",
    "connection_requests": "$connection_requests",
    "remote_addr": "$remote_addr",
    "user_agent": "$http_user_agent",
}

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 2;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    log_format moat escape=json '{log_format}';
    sendfile on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        access_log {prefix}/access.log moat;
        client_max_body_size 0;
        location / {{
            default_type application/json;
            return 200 '{echo}\\n';
        }}
        location = /204 {{
            return 204;
        }}
        location /static/ {{
            alias {prefix}/www/;
        }}
        location /sink {{
            proxy_pass http://127.0.0.1:{pyport};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
        }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name _;
        ssl_certificate {tls_cert};
        ssl_certificate_key {tls_key};
        access_log {prefix}/access.log moat;
        location / {{
            default_type application/json;
            return 200 '{echo}\\n';
        }}
    }}
}}
"""

ECHO_FIELDS = ("uri", "method", "device", "tenant", "cert_verified", "forwarded", "request_id")


class NginxOrigin:
    """nginx in the foreground under `prefix`; the access log is one JSON object per line."""

    def __init__(self, prefix, pyorigin_port, tls_cert):
        self.prefix = pathlib.Path(prefix)
        for d in ("tmp", "www", "logs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        self.www = self.prefix / "www"
        (self.www / "small.txt").write_text("small static file\n")
        self.port = free_port()
        self.tls_port = free_port()
        self.access_log = self.prefix / "access.log"
        self.access_log.write_text("")
        log_format = "{" + ",".join(f'"{k}":"{v}"' for k, v in LOG_FIELDS.items()) + "}"
        echo = "{" + ",".join(f'"{k}":"{LOG_FIELDS[k]}"' for k in ECHO_FIELDS) + "}"
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(prefix=self.prefix, port=self.port, user=user,
                                               log_format=log_format, echo=echo,
                                               pyport=pyorigin_port, tls_port=self.tls_port,
                                               tls_cert=tls_cert.cert, tls_key=tls_cert.key))
        self.stderr = open(self.prefix / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e",
             str(self.prefix / "error.log")],
            stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)
        try:
            wait_until(lambda: self.proc.poll() is not None
                       or {self.port, self.tls_port} <= listening_ports(),
                       timeout=10, what="nginx to listen")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError("nginx failed to start:\n" + self._diag())

    def _diag(self):
        out = []
        for name in ("stderr.log", "error.log"):
            p = self.prefix / name
            if p.exists():
                out.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(out)

    def log_size(self):
        return self.access_log.stat().st_size

    def entries_from(self, offset):
        """Parsed log lines written at or after byte `offset` (complete lines only)."""
        with open(self.access_log, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        return [json.loads(line) for line in data[:end].split(b"\n") if line.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.stderr.close()


class NginxView:
    """What nginx logged since this view was made (one per test)."""

    def __init__(self, nginx):
        self.nginx = nginx
        self.port = nginx.port
        self.url = f"http://127.0.0.1:{nginx.port}"
        self.www = nginx.www
        self.start = nginx.log_size()
        self.t0 = time.time()

    def entries(self):
        # Only requests that began after the view was made: a long request from an earlier
        # test that nginx logs late (when it ends) is not this test's business.
        return [e for e in self.nginx.entries_from(self.start)
                if float(e["msec"]) - float(e["request_time"]) >= self.t0 - 0.01]

    def wait_for(self, n=1, timeout=5):
        """Waits until at least n requests were logged; returns all of them."""
        return wait_until(lambda: (e := self.entries()) and len(e) >= n and e, timeout,
                          what=f"{n} request(s) in the nginx origin log")

    def one(self, timeout=5):
        entries = self.wait_for(1, timeout)
        time.sleep(0.05)
        entries = self.entries()
        assert len(entries) == 1, f"origin expected exactly one request, saw {entries}"
        return entries[0]

    def assert_quiet(self, settle=0.3):
        """Asserts the origin saw no request at all (after letting stragglers land)."""
        time.sleep(settle)
        entries = self.entries()
        assert entries == [], f"the origin must not have seen anything, saw: {entries}"


# ---------------------------------------------------------------------------------------------
# The python origin

class OriginRequest:
    def __init__(self, conn_id, method, target, version, headers, raw_head):
        self.conn_id = conn_id
        self.method = method
        self.target = target
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = dict(urllib.parse.parse_qsl(u.query))
        self.version = version
        self.headers = headers  # list of (name, value) as received
        self.raw_head = raw_head
        self.body_len = 0
        self.sha256 = None
        self.chunked = False
        self.complete = False  # the whole body arrived with valid framing
        self.error = None
        self.index = 0  # position on its connection
        self.time = time.monotonic()

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return (f"<OriginRequest {self.method} {self.target} conn={self.conn_id} "
                f"body={self.body_len} complete={self.complete}>")


class _Closed(Exception):
    pass


class _Reader:
    def __init__(self, sock, record):
        self.sock = sock
        self.buf = bytearray()
        self.record = record  # bytearray of everything received on the connection (capped)

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise _Closed()
        if len(self.record) < 1 << 20:
            self.record += data[: (1 << 20) - len(self.record)]
        self.buf += data

    def read_until(self, marker, cap):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if len(self.buf) > cap:
                raise ValueError("line too long")
            self._fill()

    def read_some(self, limit):
        if not self.buf:
            self._fill()
        n = min(limit, len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class PyOrigin:
    """Threaded raw HTTP/1.1 origin; every request it parses is recorded in `requests`."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.requests = []
        self.connections = []  # bytearray per accepted connection: everything received
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="pyorigin-accept")
        self._thread.start()

    def close(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                record = bytearray()
                self.connections.append(record)
                conn_id = len(self.connections) - 1
            threading.Thread(target=self._serve, args=(conn, conn_id, record), daemon=True,
                             name=f"pyorigin-{conn_id}").start()

    def _serve(self, conn, conn_id, record):
        conn.settimeout(60)
        reader = _Reader(conn, record)
        index = 0
        try:
            while True:
                head = reader.read_until(b"\r\n\r\n", 256 * 1024)
                req = self._parse_head(conn_id, head)
                req.index = index  # position on its connection
                index += 1
                with self.lock:
                    self.requests.append(req)
                if not self._handle(conn, reader, req):
                    break
        except (_Closed, OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _parse_head(conn_id, head):
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        return OriginRequest(conn_id, method, target, version, headers, head)

    def _read_body(self, conn, reader, req):
        if (req.header("expect") or "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        h = hashlib.sha256()
        te = req.header("transfer-encoding")
        try:
            if te is not None:
                req.chunked = True
                if te.lower() != "chunked":
                    req.error = f"unexpected transfer-encoding {te!r}"
                    return False
                while True:
                    line = reader.read_until(b"\r\n", 4096)
                    size = int(line[:-2].split(b";")[0].strip(), 16)
                    if size == 0:
                        while reader.read_until(b"\r\n", 65536) != b"\r\n":
                            pass
                        break
                    left = size
                    while left:
                        data = reader.read_some(left)
                        h.update(data)
                        req.body_len += len(data)
                        left -= len(data)
                    if reader.read_until(b"\r\n", 2) != b"\r\n":
                        raise ValueError("missing CRLF after chunk")
            else:
                left = int(req.header("content-length") or 0)
                while left:
                    data = reader.read_some(min(left, 1 << 20))
                    h.update(data)
                    req.body_len += len(data)
                    left -= len(data)
        except ValueError as e:
            req.error = str(e)
            return False
        req.sha256 = h.hexdigest()
        req.complete = True
        return True

    def _handle(self, conn, reader, req):
        """Answers one request; returns False when the connection must end."""
        q = req.query
        path = req.path
        if path == "/reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if path == "/close":
            return False
        if path == "/stale" and req.index > 0:
            # a keep-alive timeout that fires as the request arrives: closed, nothing answered
            if q.get("how") == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if not self._read_body(conn, reader, req):
            return False
        keep = (req.header("connection") or "").lower() != "close"
        if path == "/slow":
            time.sleep(float(q.get("delay", "2")))
            return self._send(conn, 200, b"slow done\n", keep)
        if path.startswith("/sink"):
            body = json.dumps({"length": req.body_len, "sha256": req.sha256,
                               "chunked": req.chunked,
                               "content_length": req.header("content-length")}).encode()
            return self._send(conn, 200, body + b"\n", keep, ctype="application/json")
        if path == "/malformed":
            conn.sendall(MALFORMED[q.get("kind", "status")])
            time.sleep(0.2)
            return False
        if path == "/chunked":
            parts = [b"first part,", b" second part,", b" last part\n"]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for p in parts:
                conn.sendall(b"%x\r\n%s\r\n" % (len(p), p))
                time.sleep(0.05)
            conn.sendall(b"0\r\n\r\n")
            return keep
        if path == "/until-close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"\r\n" + b"x" * 10000 + b"end\n")
            return False
        if path == "/headers":
            body = json.dumps({"method": req.method, "target": req.target,
                               "headers": req.headers}).encode()
            return self._send(conn, 200, body + b"\n", keep, ctype="application/json")
        return self._send(conn, 200, b"py origin ok\n", keep,
                          head_only=req.method == "HEAD")

    @staticmethod
    def _send(conn, status, body, keep, ctype="text/plain", head_only=False):
        reason = {200: "OK", 204: "No Content"}.get(status, "Whatever")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n")
        if not keep:
            head += "Connection: close\r\n"
        conn.sendall(head.encode() + b"\r\n" + (b"" if head_only else body))
        return keep


MALFORMED_MARKER = b"MALFORMED-ORIGIN-MARKER"

MALFORMED = {
    # not HTTP at all
    "status": b"HTTP/1.1 OK-ISH " + MALFORMED_MARKER + b"\r\n\r\n",
    "garbage": b"\x00\x01\x02 " + MALFORMED_MARKER + b"\r\n\r\n",
    # both framings: the classic response-splitting ambiguity
    "clte": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\n" + MALFORMED_MARKER[:5] + b"\r\n0\r\n\r\n",
    # header with a space before the colon
    "space": b"HTTP/1.1 200 OK\r\nContent-Length : 23\r\n\r\n" + MALFORMED_MARKER,
    # differing content lengths
    "twocl": b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\nContent-Length: 5\r\n\r\n"
             + MALFORMED_MARKER,
    # bare LF line endings
    "lf": b"HTTP/1.1 200 OK\nContent-Length: 23\n\n" + MALFORMED_MARKER,
}


class PyOriginView:
    """What the python origin received since this view was made (one per test)."""

    def __init__(self, origin):
        self.origin = origin
        self.port = origin.port
        self.url = origin.url
        with origin.lock:
            self._req0 = len(origin.requests)
            self._conn0 = len(origin.connections)

    def requests(self):
        with self.origin.lock:
            return list(self.origin.requests[self._req0:])

    def received(self):
        """Everything received on connections accepted since the view was made."""
        with self.origin.lock:
            return b"".join(bytes(c) for c in self.origin.connections[self._conn0:])

    def connections(self):
        with self.origin.lock:
            return len(self.origin.connections) - self._conn0

    def wait_for(self, n=1, timeout=5, path=None):
        def got():
            r = [q for q in self.requests() if path is None or q.path == path]
            return len(r) >= n and r
        return wait_until(got, timeout, what=f"{n} request(s) at the python origin")

    def wait_complete(self, timeout=30):
        """Waits for the first request whose body fully arrived."""
        def got():
            return next((q for q in self.requests() if q.complete), None)
        return wait_until(got, timeout, what="a complete request at the python origin")
