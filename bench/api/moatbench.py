"""Shared pieces of the control-plane benchmark (bench/api.sh): an admin API client on one
keep-alive connection, a device's keep-alive mTLS connection to moatd, moatd's error log read
as it grows, CPU accounting from /proc, and percentiles.

Python 3 standard library only (enroll.py also uses `cryptography` to make CSRs)."""

import http.client
import json
import os
import re
import socket
import ssl
import time

HZ = os.sysconf("SC_CLK_TCK")
APPLIED_RE = re.compile(r"store changes applied: generation (\d+) \(built in ([0-9.]+) ms\)")


def now():
    return time.monotonic()


def kv_line(**fields):
    """One key=value line, the format the shell scripts of bench/ read."""
    out = []
    for k, v in fields.items():
        if isinstance(v, float):
            v = f"{v:.3f}"
        out.append(f"{k}={v}")
    return " ".join(out)


def percentile(values, p):
    """The p-th percentile by the nearest-rank method (p99 of 100 values is the 99th)."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def median(values):
    if not values:
        return float("nan")
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# ---------------------------------------------------------------------------------------------
# the admin API

class ApiError(Exception):
    pass


class Api:
    """An admin API client with a bearer token, on one HTTP/1.1 keep-alive connection that is
    reopened if the server closed it."""

    def __init__(self, addr, token, timeout=60):
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.token = token
        self.timeout = timeout
        self.conn = None

    @classmethod
    def from_token_file(cls, addr, path, timeout=60):
        with open(path, encoding="ascii") as f:
            return cls(addr, f.read().strip(), timeout)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, auth=True):
        """(status, parsed JSON or None). Retries once on a connection the server closed."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
                continue
            if r.will_close:
                self.close()
            return r.status, (json.loads(payload) if payload else None)
        raise ApiError("unreachable")

    def ok(self, method, path, body=None, status=(200, 201, 204)):
        st, doc = self.request(method, path, body)
        if st not in status:
            raise ApiError(f"{method} {path}: {st} {doc}")
        return doc


# ---------------------------------------------------------------------------------------------
# a device's connection

class DeviceConn:
    """One keep-alive mTLS connection of an enrolled device: GET requests, one at a time."""

    def __init__(self, port, host, cert, key, server_ca, timeout=10):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(server_ca)
        ctx.load_cert_chain(cert, key)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.host = host
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("moatd closed the connection")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def get(self, path):
        """(status, body) of one GET on this connection."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                          f"User-Agent: moat-api-bench\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, close = None, False, False
        for h in lines[1:]:
            name, _, value = h.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._take(size)
                self._take(2)
        else:
            body = self._take(length or 0)
        if close:
            raise ConnectionError(f"moatd answered {status} with Connection: close")
        return status, body


# ---------------------------------------------------------------------------------------------
# moatd's error log

class LogTail:
    """Reads the lines appended to a file since the last call."""

    def __init__(self, path):
        self.path = path
        try:
            self.pos = os.path.getsize(path)
        except OSError:
            self.pos = 0

    def new_lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line being written stays for the next call
        self.pos += end
        return data[:end].decode("utf-8", "replace").splitlines()

    def applied(self):
        """[(generation, build ms)] of the 'store changes applied' lines since the last call."""
        out = []
        for line in self.new_lines():
            m = APPLIED_RE.search(line)
            if m:
                out.append((int(m.group(1)), float(m.group(2))))
        return out

    def wait_applied(self, count=1, timeout=30):
        """Waits for `count` more 'store changes applied' lines; returns them."""
        got, deadline = [], now() + timeout
        while len(got) < count and now() < deadline:
            got += self.applied()
            if len(got) < count:
                time.sleep(0.002)
        return got


# ---------------------------------------------------------------------------------------------
# CPU accounting

def proc_ticks(pid):
    """user + system clock ticks of a process, all its threads; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def busy_ticks():
    """All CPU time of the machine (user + nice + system + steal) and interrupts."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[7], v[5] + v[6]


def proc_status(pid, *keys):
    """Values in kB of /proc/PID/status lines (VmRSS, VmHWM, ...)."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out
