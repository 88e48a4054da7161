"""Raw TCP through moatd: devices (TLS or plain) that can half-close, reset and stream both
ways at once, python origins that can do the same and parse a PROXY v2 header first, an
asyncio echo origin for thousands of connections, and a port whose accept queue is full.

The TLS device drives OpenSSL through memory BIOs over its own socket, so the test decides
exactly what goes on the wire: a close_notify followed by a FIN (half-close), a RST, or
nothing, and can tell how the other side ended (close_notify, bare FIN, reset, alert).
"""

import asyncio
import hashlib
import os
import queue
import selectors
import socket
import ssl
import struct
import threading
import time

from . import pp2
from .util import wait_until

MB = 1024 * 1024


def set_linger0(sock):
    """The next close() sends a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# ---------------------------------------------------------------------------------------------
# devices

class Ended(Exception):
    """The connection ended; `how` is close_notify, eof, reset or alert:<text>."""

    def __init__(self, how):
        super().__init__(how)
        self.how = how


def _ended_how(e):
    """How an SSLError ended the stream: eof (no close_notify) or alert:<reason>."""
    if isinstance(e, ssl.SSLEOFError) or e.reason == "UNEXPECTED_EOF_WHILE_READING":
        return "eof"
    return f"alert:{e.reason or e}"


class _DeviceBase:
    """What TLS and plain devices share: the socket, how the stream ended, reading helpers."""

    end = None  # None while open; "close_notify", "eof", "reset", "alert:..." once ended

    def _connect(self, host, port, timeout, rcvbuf, sndbuf):
        self.host, self.port = host, port
        self.timeout = timeout
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.local = self.sock.getsockname()[:2]
        self.buf = bytearray()
        self.ended_at = None

    @property
    def local_port(self):
        return self.local[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Aborts the connection with a RST."""
        set_linger0(self.sock)
        self.sock.close()

    def _ended(self, how):
        if self.end is None:
            self.end = how
            self.ended_at = time.monotonic()

    def recv(self, n=1 << 16, timeout=None):
        """Up to n bytes; b"" once the stream ended (see .end). Raises TimeoutError."""
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        if self.end is not None:
            return b""
        return self._recv(n, self.timeout if timeout is None else timeout)

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"received {len(out)} of {n} bytes")
            d = self.recv(n - len(out), timeout=left)
            if not d:
                raise Ended(f"{self.end} after {len(out)} of {n} bytes")
            out += d
        return bytes(out)

    def read_to_end(self, timeout=None, cap=64 * MB):
        """Everything until the stream ends; raises TimeoutError if it does not."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"stream did not end; got {len(out)} bytes")
            d = self.recv(1 << 16, timeout=left)
            if not d:
                return bytes(out)
            out += d
            if len(out) > cap:
                raise ValueError("more than cap bytes")

    def ends_within(self, timeout):
        """True if the stream ends (any way) within timeout; data meanwhile is kept in .buf."""
        deadline = time.monotonic() + timeout
        while self.end is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                d = self._recv(1 << 16, left)
            except TimeoutError:
                return False
            self.buf += d
        return True


class TlsDevice(_DeviceBase):
    """A device speaking TLS to moatd. Handshake on construction (raises on failure)."""

    def __init__(self, port, *, pki, cert, host="127.0.0.1", server_hostname="alpha.test",
                 tls=None, session=None, timeout=5, rcvbuf=None, sndbuf=None, ctx=None):
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(str(pki.server_ca.cert))
            if cert is not None:
                ctx.load_cert_chain(str(cert.cert), str(cert.key))
            if tls == "1.2":
                ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            elif tls == "1.3":
                ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
            if server_hostname is None:
                ctx.check_hostname = False
        # python sets this by default: a bare FIN would then read like a close_notify
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        self.ctx = ctx
        self._connect(host, port, timeout, rcvbuf, sndbuf)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname,
                                session=session)
        self.write_shut = False
        try:
            self._handshake()
        except BaseException:
            self.sock.close()
            raise

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _feed(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            raise TimeoutError("no data from moatd") from None
        except ConnectionResetError:
            self._ended("reset")
            raise Ended("reset") from None
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def _handshake(self):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("TLS handshake timed out")
                self._feed(left)
        self._flush()

    @property
    def version(self):
        return self.obj.version()

    @property
    def cipher(self):
        return self.obj.cipher()[0]

    @property
    def session(self):
        return self.obj.session

    @property
    def session_reused(self):
        return self.obj.session_reused

    def sendall(self, data, chunk=256 * 1024):
        mv = memoryview(data)
        self.sock.settimeout(self.timeout)
        for i in range(0, len(mv), chunk):
            self.obj.write(mv[i:i + chunk])
            self._flush()

    def _recv(self, n, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = self.obj.read(n)
                self._flush()
                if data:
                    return data
                # b"": python's way of saying a close_notify arrived (before we sent ours);
                # a bare EOF raises SSLEOFError instead
                self._ended("close_notify")
                return b""
            except ssl.SSLWantReadError:
                self._flush()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no data from moatd")
                try:
                    self._feed(left)
                except Ended:
                    return b""
            except ssl.SSLZeroReturnError:
                self._ended("close_notify")
                return b""
            except ssl.SSLEOFError:
                self._ended("eof")
                return b""
            except ssl.SSLError as e:
                self._ended(_ended_how(e))
                return b""

    def shutdown_write(self):
        """Half-close: close_notify, then FIN. Reading stays possible."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # sent; the peer's close_notify will come in its own time
        self._flush()
        self.sock.shutdown(socket.SHUT_WR)
        self.write_shut = True

    def pump(self, chunks, on_data, stall=20):
        """Full duplex in one thread: sends every chunk of the iterable `chunks`, then
        half-closes, while feeding everything received to on_data(bytes), until the other
        side ended too. Raises TimeoutError if nothing moves for `stall` seconds."""
        sel = selectors.DefaultSelector()
        self.sock.setblocking(False)
        it = iter(chunks)
        out = bytearray()
        out_off = 0
        source_done = False
        read_done = self.end is not None
        last = time.monotonic()
        try:
            sel.register(self.sock, selectors.EVENT_READ)
            while True:
                if len(out) - out_off < 1 * MB and not source_done:
                    try:
                        chunk = next(it)
                        self.obj.write(chunk)
                    except StopIteration:
                        source_done = True
                        try:
                            self.obj.unwrap()
                        except ssl.SSLWantReadError:
                            pass
                    if out_off > 4 * MB:
                        del out[:out_off]
                        out_off = 0
                    out += self.outgoing.read()
                    continue
                if source_done and out_off == len(out) and not self.write_shut:
                    self.sock.shutdown(socket.SHUT_WR)
                    self.write_shut = True
                if read_done and self.write_shut:
                    return
                want = selectors.EVENT_READ if not read_done else 0
                if out_off < len(out):
                    want |= selectors.EVENT_WRITE
                sel.modify(self.sock, want)
                events = sel.select(1.0)
                if not events:
                    if time.monotonic() - last > stall:
                        raise TimeoutError(f"transfer stalled for {stall}s (sent all: "
                                           f"{source_done}, read done: {read_done})")
                    continue
                last = time.monotonic()
                for _, mask in events:
                    if mask & selectors.EVENT_WRITE:
                        try:
                            k = self.sock.send(memoryview(out)[out_off:out_off + 1 * MB])
                            out_off += k
                        except BlockingIOError:
                            pass
                    if mask & selectors.EVENT_READ:
                        try:
                            data = self.sock.recv(1 << 20)
                        except BlockingIOError:
                            continue
                        except ConnectionResetError:
                            self._ended("reset")
                            raise Ended("reset") from None
                        if data:
                            self.incoming.write(data)
                        else:
                            self.incoming.write_eof()
                        while True:
                            try:
                                d = self.obj.read(1 << 20)
                            except ssl.SSLWantReadError:
                                break
                            except ssl.SSLZeroReturnError:
                                self._ended("close_notify")
                                read_done = True
                                break
                            except ssl.SSLEOFError:
                                self._ended("eof")
                                read_done = True
                                break
                            except ssl.SSLError as e:
                                self._ended(_ended_how(e))
                                if self.end == "eof":
                                    read_done = True
                                    break
                                raise Ended(self.end) from None
                            if not d:
                                self._ended("close_notify")
                                read_done = True
                                break
                            on_data(d)
                        pending = self.outgoing.read()
                        if pending:
                            out += pending
        finally:
            sel.close()
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)


class PlainDevice(_DeviceBase):
    """A device on a tls = off listener: the same interface over a bare socket."""

    def __init__(self, port, *, host="127.0.0.1", timeout=5, rcvbuf=None, sndbuf=None):
        self._connect(host, port, timeout, rcvbuf, sndbuf)

    def sendall(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _recv(self, n, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(n)
        except (socket.timeout, TimeoutError):
            raise TimeoutError("no data from moatd") from None
        except ConnectionResetError:
            self._ended("reset")
            return b""
        if not data:
            self._ended("eof")
        return data

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)


# ---------------------------------------------------------------------------------------------
# python origins

class OriginConn:
    """One connection accepted by a TcpOrigin. Methods raise on timeouts; `end` says how the
    peer ended its direction (eof, reset)."""

    def __init__(self, sock, peer, pp2_expected, timeout):
        self.sock = sock
        self.peer = peer[:2]
        self.pp2_expected = pp2_expected
        self.timeout = timeout
        self.buf = bytearray()
        self.header = None
        self.header_error = None
        self.end = None
        self.accepted_at = time.monotonic()
        self.received = 0  # payload bytes after the PROXY header
        self.first_bytes = bytearray()  # the first 64 KiB received, header included

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            raise TimeoutError("no data from moatd") from None
        except ConnectionResetError:
            self.end = "reset"
            return False
        except ssl.SSLError as e:
            self.end = f"tls:{e}"
            return False
        if not data:
            self.end = "eof"
            return False
        if len(self.first_bytes) < 65536:
            self.first_bytes += data[:65536 - len(self.first_bytes)]
        self.buf += data
        return True

    def read_header(self, timeout=None):
        """Parses the PROXY v2 header that must come first; returns it (or raises PP2Error)."""
        if self.header is not None:
            return self.header
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                h, n = pp2.parse(self.buf)
            except pp2.Incomplete:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"incomplete PROXY header: {bytes(self.buf)!r}")
                if not self._fill(left):
                    raise pp2.PP2Error(f"connection ended ({self.end}) inside the PROXY "
                                       f"header: {bytes(self.buf)!r}")
                continue
            except pp2.PP2Error as e:
                self.header_error = e
                raise
            del self.buf[:n]
            self.header = h
            return h

    def recv(self, n=1 << 16, timeout=None):
        if self.pp2_expected and self.header is None:
            self.read_header(timeout)
        if not self.buf and self.end is None:
            self._fill(self.timeout if timeout is None else timeout)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.received += len(out)
        return out

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"origin received {len(out)} of {n} bytes")
            d = self.recv(n - len(out), timeout=left)
            if not d:
                raise Ended(f"{self.end} after {len(out)} of {n} bytes")
            out += d
        return bytes(out)

    def read_to_end(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        out = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the device side did not end; origin got {len(out)} bytes")
            d = self.recv(1 << 16, timeout=left)
            if not d:
                return bytes(out)
            out += d

    def ends_within(self, timeout):
        deadline = time.monotonic() + timeout
        while self.end is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._fill(left)
            except TimeoutError:
                return False
        return True

    def sendall(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def shutdown_write(self):
        if isinstance(self.sock, ssl.SSLSocket):
            # close_notify, then FIN. Non-blocking, so that OpenSSL does not wait for the
            # peer's close_notify (what unwrap() would do).
            self.sock.settimeout(0.0)
            try:
                self.sock._sslobj.shutdown()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLError, OSError):
                pass
            self.sock.settimeout(self.timeout)
        # (SSLSocket.shutdown would also drop the TLS layer for reading: bypass it)
        socket.socket.shutdown(self.sock, socket.SHUT_WR)

    def reset(self):
        set_linger0(self.sock)
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def echo_handler(conn):
    """Echoes until the device side ends, then ends its own side."""
    try:
        while True:
            d = conn.recv(1 << 16, timeout=60)
            if not d:
                break
            conn.sendall(d)
        conn.shutdown_write()
        time.sleep(0.05)
    except (OSError, TimeoutError, pp2.PP2Error, Ended):
        pass
    finally:
        conn.close()


class TcpOrigin:
    """A threaded TCP (optionally TLS) origin on 127.0.0.1.

    handler(conn) runs in a thread per connection; without a handler the test takes
    connections with accept() and drives them itself. pp2: every connection starts with a
    PROXY v2 header (recv() parses it first; conn.header)."""

    def __init__(self, handler=None, pp2=False, ssl_ctx=None, host="127.0.0.1", backlog=256,
                 timeout=10):
        self.handler = handler
        self.pp2 = pp2
        self.ssl_ctx = ssl_ctx
        self.timeout = timeout
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.url = f"{'tls' if ssl_ctx else 'tcp'}://{host}:{self.port}"
        self.conns = []
        self.tls_errors = []
        self._q = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="tcp-origin")
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                s, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._setup, args=(s, peer), daemon=True).start()

    def _setup(self, s, peer):
        if self.ssl_ctx is not None:
            s.settimeout(self.timeout)
            try:
                s = self.ssl_ctx.wrap_socket(s, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.tls_errors.append(repr(e))
                s.close()
                return
        c = OriginConn(s, peer, self.pp2, self.timeout)
        self.conns.append(c)
        if self.handler is None:
            self._q.put(c)
        else:
            self.handler(c)

    def accept(self, timeout=5):
        """The next connection (manual mode)."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the origin saw no connection within {timeout}s") from None

    def assert_no_connection(self, settle=0.5):
        time.sleep(settle)
        assert not self.conns, f"the origin must have seen no connection, saw {len(self.conns)}"

    def close(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in list(self.conns):
            c.close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncEchoOrigin:
    """An asyncio echo server in its own thread, for thousands of connections: counts open
    connections (and the most at once), bytes, and connections ended by a reset."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.open = 0
        self.max_open = 0
        self.accepted = 0
        self.bytes = 0
        self.resets = 0
        self.errors = []
        self._ready = threading.Event()
        self._loop = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="async-echo")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("async echo origin did not start")
        self.url = f"tcp://{host}:{self.port}"

    async def _serve(self, reader, writer):
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                d = await reader.read(1 << 16)
                if not d:
                    break
                self.bytes += len(d)
                writer.write(d)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except ConnectionResetError:
            self.resets += 1
        except Exception as e:  # noqa: BLE001 - recorded for the test to show
            self.errors.append(repr(e))
        finally:
            self.open -= 1
            writer.close()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, self.host, 0, backlog=4096))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def close(self):
        if self._loop is None:
            return

        async def shut():
            self._server.close()
        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# a loopback port that never completes a connect

class FullAcceptQueue:
    """A listener with listen(0) whose accept queue is filled with connections that are
    never accepted: further SYNs are dropped, so a connect to it hangs (it is not refused)."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.url = f"tcp://{host}:{self.port}"
        self.fillers = []
        for _ in range(64):
            s = socket.socket(_family(host), socket.SOCK_STREAM)
            s.settimeout(0.3)
            try:
                s.connect((host, self.port))
            except (socket.timeout, TimeoutError):
                s.close()
                break
            self.fillers.append(s)
        else:
            self.close()
            raise RuntimeError("could not fill the accept queue of a listen(0) socket")

    def connect_hangs(self, timeout=0.5):
        s = socket.socket(_family(self.sock.getsockname()[0]), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.sock.getsockname()[:2])
            return False
        except (socket.timeout, TimeoutError):
            return True
        except OSError:
            return False
        finally:
            s.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# data

def random_chunks(total, chunk=256 * 1024, h=None):
    """Yields `total` random bytes in chunks, updating hashlib object h as it goes."""
    left = total
    while left:
        n = min(chunk, left)
        d = os.urandom(n)
        if h is not None:
            h.update(d)
        left -= n
        yield d


class Pattern:
    """A deterministic, non-periodic-looking byte stream: byte i = block[i % P] with P prime,
    so that a lost, repeated or reordered run shows."""

    P = 1000003

    def __init__(self, seed=b"moat"):
        out = bytearray()
        counter = 0
        while len(out) < self.P:
            out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        del out[self.P:]
        self.block = bytes(out + out[:MB])  # so that any slice of up to 1 MB wraps around

    def at(self, offset, n):
        o = offset % self.P
        return self.block[o:o + n]  # n <= 1 MB


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def wait_for(pred, timeout, what):
    return wait_until(pred, timeout, what=what)


# ---------------------------------------------------------------------------------------------
# moatd with a tcp listener

TCP_LISTENER = "tcp"

# the contract's access log fields for a TCP connection
TCP_ACCESS_FIELDS = ("time", "conn_id", "listener", "remote", "tenant", "device", "origin",
                     "bytes_up", "bytes_down", "duration_ms", "end", "tls", "resumed")


def start_tcp(moatd, origin_url, *, tenant="alpha", tenant_keys=None, listener=None, moat=None,
              name=TCP_LISTENER, tenants=None, **kw):
    """moatd with one more listener `name` (protocol tcp, TLS on unless overridden) and
    `tenant` forwarding to origin_url. A short drain_timeout keeps teardown quick even if a
    test leaves a connection open."""
    moat_keys = {"drain_timeout": "3s"}
    moat_keys.update(moat or {})
    lk = {"protocol": "tcp"}
    lk.update(listener or {})
    tk = {"tcp_origin": origin_url}
    tk.update(tenant_keys or {})
    ts = {tenant: tk}
    ts.update(tenants or {})
    return moatd(moat=moat_keys, listeners={name: lk}, tenants=ts, **kw)


def device(m, cert, name=TCP_LISTENER, **kw):
    """A TLS device connected (handshake done) to listener `name` of moatd m."""
    return TlsDevice(m.listener_port(name), pki=m.pki, cert=cert, host=m.host, **kw)


def remote_of(dev):
    host = dev.local[0]
    return f"[{host}]:{dev.local_port}" if ":" in host else f"{host}:{dev.local_port}"


# the contract's values of "end"
TCP_ENDS = {"closed", "device_reset", "origin_reset", "idle_timeout", "origin_unreachable",
            "origin_connect_timeout", "origin_tls_failed", "revoked", "tenant_removed",
            "shutdown", "error"}


def entry_for(m, dev, timeout=5):
    """The TCP access log line of device connection dev (matched by its source port); there
    must be exactly one, and its "end" one of the contract's values."""
    r = remote_of(dev)
    found = m.wait_tcp_access(1, timeout=timeout, where=lambda e: e.get("remote") == r)
    assert len(found) == 1, f"{len(found)} access log lines for one connection: {found}"
    e = found[0]
    assert e.get("end") in TCP_ENDS, f"end {e.get('end')!r} is not one of the contract's: {e}"
    return e
