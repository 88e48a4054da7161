"""Streaming: 256 MB up and down through moatd with the SHA-256 checked at both ends, while
moatd's resident memory stays flat (it must stream, never buffer a body)."""

import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest

from moattest.client import HTTPConn, curl

RSS_GROWTH_LIMIT_KB = 64 * 1024
MB = 1024 * 1024

# An AddressSanitizer build keeps freed memory in a quarantine (256 MB by default), which
# would read as growth; a small quarantine keeps the RSS figure about moatd, not the tool.
ASAN_ENV = {"ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""),
                                                   "quarantine_size_mb=16"]))}


class RssSampler:
    """Samples VmRSS of a pid every 50 ms in a thread."""

    def __init__(self, moat):
        self.moat = moat
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.moat.rss_kb())
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


def warmed_up(moatd, pki):
    """A moatd that has served a few requests, so its baseline includes TLS and pools."""
    moat = moatd(env=ASAN_ENV)
    for _ in range(3):
        assert curl(moat, "/warmup", cert=pki.dev1).status == 200
    time.sleep(0.2)
    return moat, moat.rss_kb()


def assert_flat_rss(sampler, baseline):
    assert len(sampler.samples) >= 5, "transfer too fast to sample (or moatd gone)"
    peak = max(sampler.samples)
    assert peak - baseline < RSS_GROWTH_LIMIT_KB, (
        f"moatd RSS grew by {(peak - baseline) / 1024:.1f} MB during a 256 MB transfer "
        f"(baseline {baseline / 1024:.1f} MB, peak {peak / 1024:.1f} MB)")


@pytest.mark.deadline(150)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_256mb(moatd, pki, big_file, origin, framing):
    moat, baseline = warmed_up(moatd, pki)
    headers = ["Content-Type: application/octet-stream"]
    if framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
    with RssSampler(moat) as rss:
        r = curl(moat, "/sink", cert=pki.dev1, data_file=big_file.path, headers=headers,
                 timeout=100)
    assert moat.running, "moatd died during the upload"
    assert r.status == 200, r
    got = r.json()
    assert got["length"] == big_file.size
    assert got["sha256"] == big_file.sha256
    e = origin.wait_for(4)[-1]
    assert e["uri"] == "/sink" and e["status"] == "200"
    if framing == "chunked":
        assert got["chunked"] is True
    else:
        assert int(e["content_length"]) == big_file.size
    assert_flat_rss(rss, baseline)
    a = moat.wait_access(4)[-1]
    assert a["bytes_in"] >= big_file.size


@pytest.mark.deadline(150)
def test_download_256mb(moatd, pki, big_file, origin):
    moat, baseline = warmed_up(moatd, pki)
    args = ["curl", "-sS", "--http1.1", "--fail", "--max-time", "100",
            "--cacert", str(pki.server_ca.cert),
            "--cert", str(pki.dev1.cert), "--key", str(pki.dev1.key),
            "--resolve", f"alpha.test:{moat.port}:127.0.0.1",
            f"https://alpha.test:{moat.port}{big_file.url_path}"]
    h = hashlib.sha256()
    size = 0
    with RssSampler(moat) as rss:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while True:
                data = proc.stdout.read(MB)
                if not data:
                    break
                h.update(data)
                size += len(data)
            rc = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            err = proc.stderr.read().decode(errors="replace")
            proc.stdout.close()
            proc.stderr.close()
    assert moat.running, "moatd died during the download"
    assert rc == 0, err
    assert size == big_file.size
    assert h.hexdigest() == big_file.sha256
    assert_flat_rss(rss, baseline)
    e = origin.wait_for(4)[-1]
    assert e["uri"] == big_file.url_path and int(e["body_bytes_sent"]) == big_file.size
    a = moat.wait_access(4)[-1]
    assert a["status"] == 200 and a["bytes_out"] >= big_file.size


@pytest.mark.deadline(150)
def test_slow_reader_download_is_backpressured(moatd, pki, big_file):
    """A device that reads slowly must not make moatd buffer what the origin sends."""
    moat, baseline = warmed_up(moatd, pki)
    with RssSampler(moat) as rss:
        with HTTPConn(moat, cert=pki.dev1, timeout=10) as c:
            c.request("GET", big_file.url_path)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            got = 0
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:  # read ~8 MB over 3 s, the rest stays unread
                data = c.sock.recv(64 * 1024)
                if not data:
                    break
                got += len(data)
                time.sleep(0.02)
            time.sleep(1)
    assert moat.running, "moatd died while a device read slowly"
    assert got >= 2 * MB, f"only {got} bytes arrived in 3 s"
    assert_flat_rss(rss, baseline)
