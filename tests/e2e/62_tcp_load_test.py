"""TCP listeners under load: back-pressure from a device that stops reading (bounded memory,
the origin's sends block), 256 MB each way at once with SHA-256 checked at both ends, and
2,000 concurrent TLS connections through one listener with nothing lost."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from moattest.tcp import (MB, TCP_LISTENER, AsyncEchoOrigin, Ended, Pattern, TcpOrigin, device,
                          entry_for,
                          random_chunks, start_tcp)
from moattest.util import free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
RSS_GROWTH_LIMIT_KB = 64 * 1024

# see 40_stream_test.py: a small ASan quarantine keeps the RSS figure about moatd
ASAN_ENV = {"ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""),
                                                   "quarantine_size_mb=16"]))}


class RssSampler:
    def __init__(self, m, interval=0.05):
        self.m = m
        self.samples = []
        self.interval = interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="rss")

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.m.rss_kb())
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)

    def growth_kb(self, baseline):
        return max(self.samples) - baseline if self.samples else 0


def baseline_rss(m):
    time.sleep(0.2)
    return m.rss_kb()


# ---------------------------------------------------------------------------------------------
# back-pressure

@pytest.mark.deadline(90)
def test_slow_reader_backpressures_the_origin(moatd, pki):
    """The device stops reading while the origin has 512 MB to send: moatd's memory stays
    flat and the origin's sends block after a few MB; when the device reads again, the
    stream resumes intact."""
    total = 512 * MB
    pattern = Pattern(b"slow-reader")
    sent = [0]
    stop = threading.Event()
    errors = []

    def source(conn):
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        conn.sock.settimeout(0.2)
        try:
            conn.recv_exact(5, timeout=10)  # "start"
        except (OSError, Ended, TimeoutError):
            conn.close()  # the warm-up connection
            return
        try:
            while sent[0] < total and not stop.is_set():
                try:
                    n = conn.sock.send(pattern.at(sent[0], min(256 * 1024, total - sent[0])))
                except (socket.timeout, TimeoutError):
                    continue
                sent[0] += n
        except OSError as e:
            if not stop.is_set():
                errors.append(repr(e))
        finally:
            conn.close()

    with TcpOrigin(handler=source) as origin:
        m = start_tcp(moatd, origin.url, env=ASAN_ENV)
        with device(m, pki.dev1):
            pass  # a first connection, so that the baseline includes TLS and buffers
        baseline = baseline_rss(m)
        with RssSampler(m) as rss, device(m, pki.dev1, rcvbuf=64 * 1024, timeout=10) as d:
            d.sendall(b"start")
            # read a little, so the stream is known to flow, then stop reading
            assert len(d.recv_exact(MB, timeout=10)) == MB
            time.sleep(3)
            at3 = sent[0]
            time.sleep(1.5)
            at4 = sent[0]
            # it is stalled, and stalled early
            assert at4 - at3 < 1 * MB, (f"the origin kept sending while the device did not "
                                        f"read: {at3} -> {at4} bytes")
            assert at4 < 24 * MB, (f"the origin could send {at4 / MB:.1f} MB to a device that "
                                   f"read 1 MB: moatd (or its sockets) buffered the rest")
            growth = rss.growth_kb(baseline)
            assert growth < RSS_GROWTH_LIMIT_KB, f"moatd RSS grew by {growth / 1024:.1f} MB"
            # reading again: the stream resumes, byte-exact
            deadline = time.monotonic() + 10
            want = at4 + 8 * MB
            offset = MB
            while offset < want and time.monotonic() < deadline:
                chunk = d.recv(1 << 20, timeout=5)
                assert chunk, f"the stream ended ({d.end}) after {offset} bytes"
                assert chunk == pattern.at(offset, len(chunk)), f"corrupt bytes at {offset}"
                offset += len(chunk)
            assert offset >= want, f"only {offset} bytes read in 10s after resuming"
            stop.set()
            d.reset()
        assert m.running
    assert not errors, errors
    log_growth = max(rss.samples) - baseline
    print(f"slow reader: origin sent {at4 / MB:.1f} MB while the device read 1 MB; "
          f"moatd RSS growth {log_growth / 1024:.1f} MB")


# ---------------------------------------------------------------------------------------------
# 256 MB each way at once

@pytest.mark.deadline(150)
def test_256mb_each_way_at_once(moatd, pki):
    size = 256 * MB
    origin_rx, origin_tx = hashlib.sha256(), hashlib.sha256()
    origin_got = [0]
    origin_errors = []
    done = threading.Event()

    def both_ways(conn):
        def reader():
            try:
                while True:
                    d = conn.recv(1 << 20, timeout=60)
                    if not d:
                        break
                    origin_rx.update(d)
                    origin_got[0] += len(d)
            except Exception as e:  # noqa: BLE001
                origin_errors.append(f"origin reader: {e!r}")
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            conn.sock.settimeout(60)
            for chunk in random_chunks(size, chunk=1 << 20, h=origin_tx):
                conn.sock.sendall(chunk)
            conn.shutdown_write()
        except Exception as e:  # noqa: BLE001
            origin_errors.append(f"origin writer: {e!r}")
        t.join(timeout=120)
        conn.close()
        done.set()

    with TcpOrigin(handler=both_ways, timeout=60) as origin:
        m = start_tcp(moatd, origin.url, env=ASAN_ENV)
        baseline = baseline_rss(m)
        dev_tx, dev_rx = hashlib.sha256(), hashlib.sha256()
        dev_got = [0]

        def sink(b):
            dev_rx.update(b)
            dev_got[0] += len(b)
        t0 = time.monotonic()
        with RssSampler(m, interval=0.1) as rss, device(m, pki.dev1, timeout=30) as d:
            d.pump(random_chunks(size, h=dev_tx), sink, stall=20)
            assert done.wait(30), "the origin did not finish"
        took = time.monotonic() - t0
    assert not origin_errors, origin_errors
    assert dev_got[0] == size, f"the device received {dev_got[0]} of {size} bytes"
    assert origin_got[0] == size, f"the origin received {origin_got[0]} of {size} bytes"
    assert dev_rx.hexdigest() == origin_tx.hexdigest(), "down: SHA-256 differs"
    assert origin_rx.hexdigest() == dev_tx.hexdigest(), "up: SHA-256 differs"
    assert d.end == "close_notify", d.end
    growth = rss.growth_kb(baseline)
    assert growth < RSS_GROWTH_LIMIT_KB, f"moatd RSS grew by {growth / 1024:.1f} MB"
    e = entry_for(m, d)
    assert (e["bytes_up"], e["bytes_down"], e["end"]) == (size, size, "closed"), e
    print(f"256 MB each way in {took:.1f}s; moatd RSS growth {growth / 1024:.1f} MB")


# ---------------------------------------------------------------------------------------------
# 2,000 at once

@pytest.mark.deadline(150)
def test_2000_concurrent_connections(moatd, pki):
    total, procs, size = 2000, 4, 16 * 1024
    echo = AsyncEchoOrigin()
    clients = []
    try:
        m = start_tcp(moatd, echo.url, moat={"max_connections": "5000"})
        port = m.listener_port("tcp")
        for i in range(procs):
            clients.append(subprocess.Popen(
                [sys.executable, os.path.join(HERE, "moattest", "tcpload.py"),
                 "--port", str(port), "--conns", str(total // procs), "--size", str(size),
                 "--ca", str(pki.server_ca.cert), "--cert", str(pki.dev1.cert),
                 "--key", str(pki.dev1.key), "--sni", "alpha.test", "--handshakes", "50",
                 "--timeout", "60"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True))
        ready = []
        for p in clients:
            line = p.stdout.readline()
            assert line, f"a load client died: {p.stderr.read()[-2000:]}"
            ready.append(json.loads(line))
        failed = [f for r in ready for f in r["failed"]]
        n_ready = sum(r["ready"] for r in ready)
        # every connection is open at once, through moatd, at the origin
        open_now = echo.open
        assert n_ready == total, (f"{n_ready} of {total} connections exchanged their bytes; "
                                  f"failures (first ones): {failed[:10]}")
        assert open_now == total and echo.max_open == total, \
            f"the origin had {open_now} connections open at once (max {echo.max_open})"
        assert echo.bytes == total * size
        assert m.running
        for p in clients:
            p.stdin.write("go\n")
            p.stdin.flush()
        done = [json.loads(p.stdout.readline() or "{}") for p in clients]
        for p in clients:
            assert p.wait(timeout=60) == 0, p.stderr.read()[-2000:]
        closed_ok = sum(r.get("done", 0) for r in done)
        assert closed_ok == total, [r.get("failed") for r in done]
        wait_until(lambda: echo.open == 0, 20, what="every origin connection to close")
        assert not echo.errors and echo.resets == 0, (echo.errors[:5], echo.resets)
        entries = m.wait_tcp_access(total, timeout=30)
        ends = {}
        for e in entries:
            ends[e["end"]] = ends.get(e["end"], 0) + 1
        wrong = [e for e in entries if (e["bytes_up"], e["bytes_down"]) != (size, size)]
        assert ends == {"closed": total}, ends
        assert not wrong, wrong[:5]
        assert len({e["conn_id"] for e in entries}) == total, "conn_id repeated"
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        echo.close()


@pytest.fixture(scope="module")
def tcpload(tmp_path_factory):
    """bench/tcpload (C: a load client and a plain-TCP origin), fast enough to keep moatd busy,
    which Python peers are not."""
    root = os.path.dirname(os.path.dirname(HERE))
    out = tmp_path_factory.mktemp("tcpload") / "tcpload"
    subprocess.run(["cc", "-O2", "bench/tcpload.c", "bench/tlsclient.c", "-lssl", "-lcrypto",
                    "-o", str(out)], cwd=root, check=True, timeout=120)
    return str(out)


def kv_line(text):
    """The key=value result line of a tcpload run."""
    line = next((l for l in text.splitlines() if l.startswith("mode=")), "")
    return dict(f.split("=", 1) for f in line.split() if "=" in f)


@pytest.mark.parametrize("direction", ["down", "up"])
def test_busy_streams_leave_room_for_new_connections(moatd, pki, tcpload, tmp_path, direction):
    """Four streams as fast as moatd can move them on a one-worker moatd, and new connections
    (handshake and a 1-byte echo) ten times a second: each stream gets its share and every new
    connection gets through quickly, because a busy stream yields to the event loop after a
    bounded amount of work."""
    port = free_port()
    counters = tmp_path / "counters"
    origin = subprocess.Popen([tcpload, "-m", "serve", "-a", f"127.0.0.1:{port}",
                               "-O", str(counters)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: counters.exists(), 5, what="tcpload serve")
        m = start_tcp(moatd, f"tcp://127.0.0.1:{port}", moat={"workers": "1"})
        r = subprocess.run(
            [tcpload, "-m", direction, "-a", f"127.0.0.1:{m.listener_port(TCP_LISTENER)}",
             "-s", "alpha.test", "-c", str(pki.dev1.cert), "-k", str(pki.dev1.key),
             "-n", "4", "-d", "3", "-w", "1", "-O", str(counters), "-r", "10"],
            capture_output=True, text=True, timeout=60)
    finally:
        origin.terminate()
        origin.wait(timeout=10)
    res = kv_line(r.stdout)
    assert res.get("ok") == "1" and res.get("streams_up") == "4", r.stdout + r.stderr
    assert int(res["probes"]) >= 20, res
    assert res["probe_unfinished"] == "0" and res["probe_failed"] == "0", r.stderr
    assert float(res["probe_p50_ms"]) < 250, r.stderr
    assert float(res["fairness"]) >= 0.9, r.stderr
