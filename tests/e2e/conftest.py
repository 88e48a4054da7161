"""Fixtures for the moatd end-to-end suite.

Session-wide: the test PKI (openssl CLI), the python origin, the nginx origin, and the 256 MB
stream file. Per test: a view of each origin's log that starts empty, and `moatd`, a factory
that starts moatd processes with per-test config overrides and, at the end, stops each with
SIGTERM, requires exit status 0 and no sanitizer report.

Every test runs under a SIGALRM deadline (default 60 s, `@pytest.mark.deadline(s)` to change),
so a hung socket or process fails the test instead of the run.
"""

import hashlib
import os
import resource
import signal
import sys

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from moattest.moatd import Moatd, check_binary  # noqa: E402
from moattest.origin import NginxOrigin, NginxView, PyOrigin, PyOriginView  # noqa: E402
from moattest.pki import PKI  # noqa: E402

DEFAULT_DEADLINE = 60

# Thousands of connections at once (60_tcp): the soft open-files limit up to the hard one, for
# the test process and everything it starts (moatd, origins, clients) alike.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _hard != resource.RLIM_INFINITY and _soft < _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
BIG_SIZE = 256 * 1024 * 1024


class DeadlineExceeded(Exception):
    pass


def _alarm(signum, frame):
    raise DeadlineExceeded("test exceeded its deadline (see @pytest.mark.deadline)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("deadline")
    seconds = marker.args[0] if marker else DEFAULT_DEADLINE
    old = signal.signal(signal.SIGALRM, _alarm)
    # setup + call + teardown; teardown needs room to stop moatd, hence the margin
    signal.setitimer(signal.ITIMER_REAL, seconds + 30)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("deadline")
    seconds = marker.args[0] if marker else DEFAULT_DEADLINE
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        # leave the teardown a fresh budget
        signal.setitimer(signal.ITIMER_REAL, 30)


# ---------------------------------------------------------------------------------------------
# session-wide

@pytest.fixture(scope="session")
def moatd_bin():
    path, why = check_binary()
    if path is None:
        pytest.fail(why, pytrace=False)
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def pyorigin_server():
    server = PyOrigin()
    yield server
    server.close()


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory, pyorigin_server, pki):
    server = NginxOrigin(tmp_path_factory.mktemp("nginx"), pyorigin_server.port,
                         pki.origin_server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def big_file(nginx_server):
    """A 256 MB file of random bytes in nginx's /static/ (big.bin), with its SHA-256."""
    path = nginx_server.www / "big.bin"
    h = hashlib.sha256()
    block = 1 << 20
    with open(path, "wb") as f:
        for _ in range(BIG_SIZE // block):
            data = os.urandom(block)
            h.update(data)
            f.write(data)

    class Big:
        pass
    big = Big()
    big.path = path
    big.size = BIG_SIZE
    big.sha256 = h.hexdigest()
    big.url_path = "/static/big.bin"
    yield big
    path.unlink()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    """mosquitto on a plain loopback listener, logging every connection (see .mark())."""
    from moattest.thirdparty import Mosquitto
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def tcp_echo():
    """A python TCP echo origin (no PROXY header expected)."""
    from moattest.tcp import TcpOrigin, echo_handler
    origin = TcpOrigin(handler=echo_handler)
    yield origin
    origin.close()


@pytest.fixture(scope="session")
def haproxy(tmp_path_factory, tcp_echo):
    """HAProxy with `accept-proxy` in TCP mode in front of tcp_echo, logging what the PROXY
    v2 header said (see moattest.thirdparty.HAProxy)."""
    from moattest.thirdparty import HAProxy
    proxy = HAProxy(tmp_path_factory.mktemp("haproxy"), tcp_echo.port)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def cams(pki):
    """Devices for the virtual-patch tests (alpha's CA, device id = CN): dev1 is pki.dev1
    (CN dev-1); dev2 (CN dev-2) and dev3 (CN dev-3) are issued for them."""
    class Cams:
        pass
    c = Cams()
    c.dev1 = pki.dev1
    c.dev2 = pki.issue_device("rules-dev-2", cn="dev-2")
    c.dev3 = pki.issue_device("rules-dev-3", cn="dev-3")
    return c


# ---------------------------------------------------------------------------------------------
# per test

@pytest.fixture
def origin(nginx_server):
    """The nginx origin as this test sees it: its log starts empty."""
    return NginxView(nginx_server)


@pytest.fixture
def pyorigin(pyorigin_server):
    """The python origin as this test sees it: no requests recorded yet."""
    return PyOriginView(pyorigin_server)


@pytest.fixture
def moatd(moatd_bin, pki, nginx_server, tmp_path):
    """Factory: moatd(moat={...}, listener={...}, tenants={...}, start=True, origin=url).

    Every instance is stopped with SIGTERM after the test (unless the test stopped it) and
    must exit 0 without any sanitizer report.
    """
    started = []

    def factory(moat=None, listener=None, tenants=None, extra="", raw=None, start=True,
                origin=None, bind_host="127.0.0.1", env=None, listeners=None):
        d = tmp_path / f"moatd{len(started)}"
        m = Moatd(moatd_bin, d, pki, origin or f"http://127.0.0.1:{nginx_server.port}",
                  bind_host=bind_host)
        m.configure(moat=moat, listener=listener, tenants=tenants, extra=extra, raw=raw,
                    listeners=listeners)
        started.append(m)
        if start:
            m.start(env=env)
        return m

    yield factory

    problems = []
    for m in started:
        if m.proc is None:
            continue
        try:
            rc = m.stop()
        except AssertionError as e:
            problems.append(str(e))
            continue
        if m.died_early is not None and m.died_early != 0 and not m.failed_start:
            problems.append(f"moatd died during the test with status {m.died_early}"
                            f"{' (signal %d)' % -m.died_early if m.died_early < 0 else ''}\n"
                            f"{m.diagnostics()}")
        # a test that signalled moatd and awaited its exit has asserted the status itself
        elif rc != 0 and not m.failed_start and not m.exit_awaited:
            problems.append(f"moatd exited with status {rc} after SIGTERM\n{m.diagnostics()}")
        reports = m.sanitizer_reports()
        if reports:
            problems.append(f"sanitizer report in moatd output ({reports})\n"
                            f"{m.stderr_text()[-6000:]}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def moat(moatd):
    """A moatd with the default configuration (tenants alpha and beta, origin nginx)."""
    return moatd()
