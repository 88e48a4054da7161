"""Operations: the command line, config checking with file:line errors, reload under load,
refused reloads, draining on SIGTERM, log reopening, connection limits."""

import os
import re
import shutil
import signal
import threading
import time

import pytest

from moattest.client import HTTPConn, Response, curl, s_client, try_request
from moattest.util import run, tcp_refused, wait_until


# ---------------------------------------------------------------------------------------------
# command line

def test_version(moatd_bin):
    p = run([moatd_bin, "-v"], check=False, timeout=10)
    assert p.returncode == 0, p
    assert re.search(r"\d+\.\d+", p.stdout + p.stderr), p


def test_help(moatd_bin):
    p = run([moatd_bin, "-h"], check=False, timeout=10)
    out = p.stdout + p.stderr
    assert p.returncode == 0, p
    assert "-c" in out and "-t" in out, out


def test_check_good_config(moatd):
    m = moatd(start=False)
    p = m.check_config()
    assert p.returncode == 0, p
    assert f"moatd: configuration {m.conf} is ok" in p.stdout + p.stderr, p


BROKEN = [
    # id, overrides, (section, key) whose line must be reported
    ("bad-duration", dict(moat={"idle_timeout": "banana"}), ("moat", "idle_timeout")),
    ("bad-size", dict(moat={"max_header_size": "12q"}), ("moat", "max_header_size")),
    ("bad-log-level", dict(moat={"log_level": "loud"}), ("moat", "log_level")),
    ("bad-bind", dict(listener={"bind": "not-an-address"}), ("listener devices", "bind")),
    ("unknown-default-tenant", dict(listener={"default_tenant": "nobody"}),
     ("listener devices", "default_tenant")),
    ("bad-mtls", dict(tenants={"alpha": {"mtls": "maybe"}}), ("tenant alpha", "mtls")),
    ("bad-device-id", dict(tenants={"alpha": {"device_id": "serial"}}),
     ("tenant alpha", "device_id")),
    ("bad-origin", dict(tenants={"alpha": {"origin": "ftp://127.0.0.1:21"}}),
     ("tenant alpha", "origin")),
    ("missing-cert", dict(tenants={"alpha": {"cert": "/nonexistent/alpha.pem"}}),
     ("tenant alpha", "cert")),
]


@pytest.mark.parametrize("name,overrides,where", BROKEN, ids=[b[0] for b in BROKEN])
def test_check_broken_config_reports_file_and_line(moatd, name, overrides, where):
    m = moatd(start=False, **overrides)
    line = m.config_line(*where)
    p = m.check_config()
    assert p.returncode == 1, p
    assert f"{m.conf}:{line}:" in p.stderr, (line, p.stderr)


@pytest.mark.parametrize("key", ["cert", "key", "device_ca", "crl"])
def test_check_loads_every_file_it_names(moatd, key, tmp_path):
    """-t loads certificates, keys, CAs and CRLs: a file that exists but is garbage fails."""
    junk = tmp_path / f"junk-{key}.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                    "-----END CERTIFICATE-----\n")
    m = moatd(start=False, tenants={"alpha": {key: str(junk)}})
    p = m.check_config()
    assert p.returncode == 1, p
    assert f"{m.conf}:{m.config_line('tenant alpha', key)}:" in p.stderr, p.stderr


def test_check_key_not_matching_certificate(moatd, pki):
    m = moatd(start=False, tenants={"alpha": {"key": str(pki.beta_server.key)}})
    p = m.check_config()
    assert p.returncode == 1, p
    lines = {m.config_line("tenant alpha", "cert"), m.config_line("tenant alpha", "key")}
    assert any(f"{m.conf}:{n}:" in p.stderr for n in lines), p.stderr


def test_check_reports_every_error(moatd):
    m = moatd(start=False, moat={"idle_timeout": "banana"},
              tenants={"beta": {"mtls": "sometimes"}})
    p = m.check_config()
    assert p.returncode == 1, p
    for where in (("moat", "idle_timeout"), ("tenant beta", "mtls")):
        assert f"{m.conf}:{m.config_line(*where)}:" in p.stderr, p.stderr


def test_check_syntax_error(moatd):
    m = moatd(start=False, extra="this line is not ini\n")
    n = len(m.conf.read_text().splitlines())
    p = m.check_config()
    assert p.returncode == 1, p
    assert f"{m.conf}:{n}:" in p.stderr, p.stderr


def test_relative_paths_resolve_against_the_working_directory(moatd, pki, tmp_path, origin):
    m = moatd(start=False)
    (m.dir / "certs").mkdir()
    shutil.copy(pki.alpha_server.cert, m.dir / "certs" / "alpha.pem")
    shutil.copy(pki.alpha_server.key, m.dir / "certs" / "alpha.key")
    m.configure(tenants={"alpha": {"cert": "certs/alpha.pem", "key": "certs/alpha.key"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = m.check_config(cwd=elsewhere)
    assert p.returncode == 1, p
    assert f"{m.conf}:{m.config_line('tenant alpha', 'cert')}:" in p.stderr, p.stderr
    assert m.check_config(cwd=m.dir).returncode == 0
    m.start(cwd=m.dir)
    assert curl(m, "/relative", cert=pki.dev1).status == 200


def test_start_line(moat):
    # the contract's wording: "[info] moatd started: N workers, listening on ..."
    line = moat.wait_log(r"\[info\] moatd started: \d+ workers, listening on", timeout=2)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[info\] moatd started: 2 workers",
                    line), line
    assert f"127.0.0.1:{moat.port}" in line


def test_workers_auto(moatd):
    moat = moatd(moat={"workers": "auto"})
    line = moat.wait_log(r"\bstarted\b", timeout=2)
    assert f" {os.cpu_count()} workers" in line, line


def test_log_level_error_hides_warnings(moatd, pki):
    moat = moatd(moat={"log_level": "error"})
    assert curl(moat, "/refused", cert=pki.expired).status == 0
    assert curl(moat, "/fine", cert=pki.dev1).status == 200
    time.sleep(0.3)
    assert not [l for l in moat.log_lines() if "[warn]" in l or "[info]" in l], \
        moat.log_lines()


def test_pid_file(moat):
    assert moat.pid_file.read_text().strip() == str(moat.pid)


def test_broken_config_does_not_start(moatd):
    m = moatd(start=False, moat={"idle_timeout": "banana"})
    p = run([m.binary, "-c", str(m.conf)], check=False, timeout=10, cwd=str(m.dir))
    assert p.returncode != 0
    assert f"{m.conf}:{m.config_line('moat', 'idle_timeout')}:" in p.stderr + m.stderr_text() \
        + "\n".join(m.log_lines()), p


# ---------------------------------------------------------------------------------------------
# reload

def gamma_reachable(moat, pki):
    p = s_client(moat, servername="gamma.test", cert=pki.dev1,
                 request="GET /gamma HTTP/1.1\r\nHost: gamma.test\r\nConnection: close\r\n\r\n")
    return "HTTP/1.1 200" in p.stdout


def test_reload_applies_the_new_config(moat, pki, origin):
    assert not gamma_reachable(moat, pki)
    moat.configure(tenants={"gamma": {}})
    moat.reload()
    assert gamma_reachable(moat, pki)
    assert origin.one()["tenant"] == "gamma"
    moat.configure()
    moat.reload()
    assert not gamma_reachable(moat, pki)


def test_broken_config_on_reload_is_refused_and_the_old_one_serves(moat, pki, origin):
    moat.configure(tenants={"gamma": {}}, moat={"idle_timeout": "banana"})
    new = moat.reload(expect_ok=False)
    assert any("[error]" in l for l in new), new
    assert moat.running
    assert curl(moat, "/still-served", cert=pki.dev1).status == 200
    assert not gamma_reachable(moat, pki), "part of a refused config was applied"
    # the broken file with missing certificate is refused too, whole
    moat.configure(tenants={"gamma": {"cert": "/nonexistent.pem"}})
    moat.reload(expect_ok=False)
    assert not gamma_reachable(moat, pki)
    # and a fixed config is then taken
    moat.configure(tenants={"gamma": {}})
    moat.reload()
    assert gamma_reachable(moat, pki)


@pytest.mark.deadline(90)
def test_reload_under_load_drops_nothing(moat, pki, origin):
    stop = threading.Event()
    failures = []
    counts = {"keepalive": 0, "fresh": 0}

    def keepalive_loop():
        try:
            with HTTPConn(moat, cert=pki.dev1, timeout=5) as c:
                while not stop.is_set():
                    c.request("GET", "/load/keepalive")
                    r = c.response()
                    if r.status != 200:
                        failures.append(("keepalive", r))
                    counts["keepalive"] += 1
        except Exception as e:  # any failure on the long-lived connection counts
            failures.append(("keepalive", repr(e)))

    def fresh_loop():
        while not stop.is_set():
            r = try_request(moat, "/load/fresh", cert=pki.dev1, timeout=5)
            if not (isinstance(r, Response) and r.status == 200):
                failures.append(("fresh", repr(r)))
            counts["fresh"] += 1

    threads = [threading.Thread(target=keepalive_loop, daemon=True),
               threading.Thread(target=keepalive_loop, daemon=True),
               threading.Thread(target=fresh_loop, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for i in range(5):
        # each reload really changes the generation: tenant gamma comes and goes
        moat.configure(tenants={"gamma": {}} if i % 2 == 0 else None)
        moat.reload(settle=0.1)
        time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not failures, failures[:10]
    assert counts["keepalive"] >= 20 and counts["fresh"] >= 5, counts
    assert moat.running


# ---------------------------------------------------------------------------------------------
# draining

def test_sigterm_drains_in_flight_request(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url, moat={"drain_timeout": "10s"})
    with HTTPConn(moat, cert=pki.dev1, timeout=10) as c:
        c.request("GET", "/slow?delay=2.5")
        pyorigin.wait_for(1, path="/slow")
        moat.send_signal(signal.SIGTERM)
        wait_until(lambda: tcp_refused(moat.host, moat.port), timeout=2,
                   what="moatd to stop accepting after SIGTERM")
        assert moat.running, "moatd exited before its in-flight request completed"
        r = c.response()
    assert r.status == 200, r
    assert r.body == b"slow done\n"
    assert moat.wait(timeout=5) == 0


def test_sigint_drains_too(moatd, pki):
    moat = moatd()
    assert curl(moat, "/before-int", cert=pki.dev1).status == 200
    moat.send_signal(signal.SIGINT)
    assert moat.wait(timeout=10) == 0


def test_drain_timeout_bounds_the_wait(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url, moat={"drain_timeout": "1s"})
    with HTTPConn(moat, cert=pki.dev1, timeout=10) as c:
        c.request("GET", "/slow?delay=8")
        pyorigin.wait_for(1, path="/slow")
        t0 = time.monotonic()
        moat.send_signal(signal.SIGTERM)
        rc = moat.wait(timeout=6)
        elapsed = time.monotonic() - t0
        r = c.response_or_close(2)
    assert rc == 0
    assert 0.7 <= elapsed <= 3.0, f"exited {elapsed:.2f}s after SIGTERM, drain_timeout=1s"
    assert r is None or r.status != 200


def test_second_sigterm_stops_at_once(moatd, pyorigin, pki):
    moat = moatd(origin=pyorigin.url, moat={"drain_timeout": "20s"})
    with HTTPConn(moat, cert=pki.dev1, timeout=10) as c:
        c.request("GET", "/slow?delay=8")
        pyorigin.wait_for(1, path="/slow")
        moat.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert moat.running, "moatd must still be draining its in-flight request"
        t0 = time.monotonic()
        moat.send_signal(signal.SIGTERM)
        rc = moat.wait(timeout=6)
        elapsed = time.monotonic() - t0
    assert rc == 0
    assert elapsed < 1.5, f"second SIGTERM took {elapsed:.2f}s"


def test_sigterm_does_not_wait_for_idle_connections(moatd, pki):
    moat = moatd(moat={"drain_timeout": "10s"})
    with HTTPConn(moat, cert=pki.dev1, timeout=5) as c:
        c.request("GET", "/then-idle")
        assert c.response().status == 200
        t0 = time.monotonic()
        moat.send_signal(signal.SIGTERM)
        assert moat.wait(timeout=8) == 0
        assert time.monotonic() - t0 < 2.0, "an idle keep-alive connection held up the drain"
        assert c.closed_within(1)


# ---------------------------------------------------------------------------------------------
# logs

def test_sigusr1_reopens_logs(moat, pki):
    assert curl(moat, "/before-rotation", cert=pki.dev1).status == 200
    moat.wait_access(1)
    rotated_access = moat.access_log.with_name("access.log.1")
    rotated_error = moat.error_log.with_name("error.log.1")
    os.rename(moat.access_log, rotated_access)
    os.rename(moat.error_log, rotated_error)
    moat.send_signal(signal.SIGUSR1)
    wait_until(lambda: moat.access_log.exists() and moat.error_log.exists(), timeout=3,
               what="moatd to reopen its logs")
    assert curl(moat, "/after-rotation", cert=pki.dev1).status == 200
    entries = moat.wait_access(1)
    assert [e["path"] for e in entries] == ["/after-rotation"]
    old = rotated_access.read_text().splitlines()
    assert len(old) == 1 and "/before-rotation" in old[0]


# ---------------------------------------------------------------------------------------------
# connection limits

@pytest.mark.parametrize("key", ["max_connections_per_ip", "max_connections"])
def test_connection_limit(moatd, pki, origin, key):
    moat = moatd(moat={key: "2"})
    c1 = HTTPConn(moat, cert=pki.dev1)
    c2 = HTTPConn(moat, cert=pki.dev1)
    try:
        for c in (c1, c2):
            c.request("GET", "/held")
            assert c.response().status == 200
        third = try_request(moat, "/third", cert=pki.dev1, timeout=5)
        assert not (isinstance(third, Response) and third.status == 200), \
            f"a third connection was served with {key}=2"
        # the two admitted connections are unaffected
        c1.request("GET", "/held-again")
        assert c1.response().status == 200
    finally:
        c1.close()
    # a slot frees when a connection ends
    got = wait_until(lambda: (r := try_request(moat, "/after-close", cert=pki.dev1))
                     and isinstance(r, Response) and r.status == 200 and r, timeout=3,
                     interval=0.2, what="a free connection slot")
    assert got.status == 200
    c2.close()
    assert "/third" not in [e["uri"] for e in origin.entries()]
