"""Runs moatd under test: writes its config (per the behaviour contract), starts it in the
foreground, reads its logs, reloads and stops it, and checks it left no sanitizer report."""

import json
import os
import pathlib
import re
import signal
import subprocess
import time

from .util import free_port, listening_ports, run, wait_until

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
    "==ABORTING",
)

LISTENER = "devices"


def render(sections):
    """INI text from {"section name": {key: value}}; a None value leaves the key out."""
    out = []
    for name, keys in sections.items():
        if keys is None:
            continue
        out.append(f"[{name}]")
        for k, v in keys.items():
            if v is not None:
                out.append(f"{k} = {v}")
        out.append("")
    return "\n".join(out)


class Moatd:
    """One moatd process with its own directory, port, config and logs."""

    def __init__(self, binary, workdir, pki, origin_url, bind_host="127.0.0.1"):
        self.binary = binary
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        self.pki = pki
        self.origin_url = origin_url
        self.host = bind_host
        self.port = free_port(bind_host)
        self.admin_port = free_port("127.0.0.1")  # the admin API, on loopback
        self.conf = self.dir / "moat.conf"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.pid_file = self.dir / "moatd.pid"
        # written only when a test sets [moat] security_log to it (see moattest.rules)
        self.security_log = self.dir / "security.log"
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.proc = None
        self.returncode = None
        self.failed_start = False  # the test already failed on it; teardown need not repeat
        self.died_early = None  # exit status if moatd was gone before anyone stopped it
        self.exit_awaited = False  # the test signalled moatd and waited for its exit
        self.sections = None
        self.listener_ports = {LISTENER: self.port}  # more listeners get a port on first use

    # -- configuration --------------------------------------------------------------------

    def listener_port(self, name=LISTENER):
        """The port of listener `name` (allocated when first asked for, then kept)."""
        if name not in self.listener_ports:
            self.listener_ports[name] = free_port(self.host)
        return self.listener_ports[name]

    def bind_address(self, name=LISTENER):
        port = self.listener_port(name)
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    def default_sections(self):
        p = self.pki
        bind = self.bind_address(LISTENER)
        return {
            "moat": {
                "workers": "2",
                "data_dir": str(self.dir / "data"),
                "access_log": str(self.access_log),
                "error_log": str(self.error_log),
                "log_level": "info",
                "pid_file": str(self.pid_file),
                "admin_listen": f"127.0.0.1:{self.admin_port}",
            },
            f"listener {LISTENER}": {
                "bind": bind,
                "protocol": "http",
            },
            "tenant alpha": {
                "hosts": "alpha.test,*.alpha.test",
                "cert": str(p.alpha_server.cert),
                "key": str(p.alpha_server.key),
                "device_ca": str(p.alpha_ca.cert),
                "crl": str(p.alpha_crl),
                "mtls": "require",
                "device_id": "cn",
                "origin": self.origin_url,
            },
            "tenant beta": {
                "hosts": "beta.test",
                "cert": str(p.beta_server.cert),
                "key": str(p.beta_server.key),
                "device_ca": str(p.beta_ca.cert),
                "crl": str(p.beta_crl),
                "mtls": "require",
                "device_id": "cn",
                "origin": self.origin_url,
            },
        }

    def gamma_section(self):
        """A third tenant (gamma.test, alpha's devices) that reload tests add and remove."""
        p = self.pki
        return {
            "hosts": "gamma.test",
            "cert": str(p.gamma_server.cert),
            "key": str(p.gamma_server.key),
            "device_ca": str(p.alpha_ca.cert),
            "mtls": "require",
            "device_id": "cn",
            "origin": self.origin_url,
        }

    def configure(self, moat=None, listener=None, tenants=None, extra="", raw=None,
                  listeners=None):
        """Writes the config file: the defaults with per-section overrides.

        moat / listener: {key: value or None to drop}. tenants: {name: {key: value} or None to
        drop the tenant}; unknown names add a tenant. listeners: {name: {key: value} or None
        to drop it}: more `[listener NAME]` sections (e.g. protocol = tcp), each bound by
        default to its own free port on the same host (listener_port(name)); the name
        "devices" overrides the default listener like `listener`. extra: text appended
        verbatim. raw: the whole file verbatim instead.
        """
        if raw is not None:
            self.conf.write_text(raw)
            return self.conf
        s = self.default_sections()
        for k, v in (moat or {}).items():
            s["moat"][k] = v
        for k, v in (listener or {}).items():
            s[f"listener {LISTENER}"][k] = v
        for name, keys in (listeners or {}).items():
            sec = f"listener {name}"
            if keys is None:
                s.pop(sec, None)
                continue
            base = s.get(sec)
            if base is None:
                base = s[sec] = {"bind": self.bind_address(name)}
            for k, v in keys.items():
                base[k] = v
        for name, keys in (tenants or {}).items():
            sec = f"tenant {name}"
            if keys is None:
                s.pop(sec, None)
                continue
            base = s.get(sec)
            if base is None:
                base = self.gamma_section() if name == "gamma" else {}
                s[sec] = base
            for k, v in keys.items():
                base[k] = v
        self.sections = s
        text = render(s) + extra
        tmp = self.conf.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.conf)
        return self.conf

    def config_line(self, section, key):
        """1-based line number of `key` in `[section]` of the written config."""
        current = None
        for n, line in enumerate(self.conf.read_text().splitlines(), 1):
            m = re.match(r"\s*\[(.+)\]\s*$", line)
            if m:
                current = m.group(1)
            elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
                return n
        raise KeyError(f"{section}/{key} not in {self.conf}")

    # -- process --------------------------------------------------------------------------

    def check_config(self, path=None, cwd=None):
        """`moatd -t -c FILE`: returns the CompletedProcess."""
        return run([self.binary, "-t", "-c", str(path or self.conf)], timeout=30, check=False,
                   cwd=str(cwd or self.dir))

    def start(self, timeout=15, cwd=None, env=None):
        self.stdout = open(self.stdout_path, "ab")
        self.stderr = open(self.stderr_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     cwd=str(cwd or self.dir), stdin=subprocess.DEVNULL,
                                     stdout=self.stdout, stderr=self.stderr, env=full_env)
        self.pid = self.proc.pid

        # The strict wording of the start line is checked by its own test (50_ops); here any
        # "moatd ... started" line will do, so that a wording slip fails one test, not all.
        started = re.compile(r"\bmoatd\b.*\bstarted\b")
        level = (self.sections or {}).get("moat", {}).get("log_level") or "info"
        quiet = level in ("warn", "error")  # no [info] start line to wait for

        # every listener of ours bound to its default address must be listening
        # (the default listener always, unless a test dropped its section)
        sections = self.sections or {}
        ports = {self.port}
        if self.sections is not None and f"listener {LISTENER}" not in sections:
            ports = set()
        for name, port in self.listener_ports.items():
            keys = sections.get(f"listener {name}")
            if name != LISTENER and keys is not None \
                    and keys.get("bind") == self.bind_address(name):
                ports.add(port)

        def up():
            if self.proc.poll() is not None:
                return True
            return (ports <= listening_ports()
                    and (quiet or any(started.search(line) for line in self.log_lines())))
        try:
            wait_until(up, timeout, what="moatd to log 'moatd started' and listen")
        except TimeoutError:
            self.failed_start = True
            raise AssertionError(f"moatd did not come up in {timeout}s\n{self.diagnostics()}")
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self.failed_start = True
            raise AssertionError(f"moatd exited with {self.proc.returncode} at start\n"
                                 f"{self.diagnostics()}")
        return self

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}/v1"

    def operator_token(self):
        """The operator token moatd created at its first start (data_dir/operator.token)."""
        return (self.dir / "data" / "operator.token").read_text().strip()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for an exit the test itself caused (a signal it sent)."""
        self.exit_awaited = True
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        finally:
            self._close_files()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signals moatd and waits for it; kills it (and fails) if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None and not self.exit_awaited:
            self.died_early = self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self._close_files()
                raise AssertionError(f"moatd did not exit within {timeout}s of {sig!r}\n"
                                     f"{self.diagnostics()}")
        self.returncode = self.proc.returncode
        self._close_files()
        return self.returncode

    def _close_files(self):
        for f in (getattr(self, "stdout", None), getattr(self, "stderr", None)):
            if f is not None and not f.closed:
                f.close()

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- logs -----------------------------------------------------------------------------

    def _read(self, path):
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self._read(self.error_log).splitlines()

    def stderr_text(self):
        return self._read(self.stderr_path)

    def wait_log(self, pattern, timeout=5, start=0):
        """Waits for an error-log line (at index >= start) matching the regex; returns it."""
        rx = re.compile(pattern)

        def find():
            return next((l for l in self.log_lines()[start:] if rx.search(l)), None)
        try:
            return wait_until(find, timeout, what=f"error log line /{pattern}/")
        except TimeoutError:
            raise AssertionError(f"no error-log line matching /{pattern}/ within {timeout}s\n"
                                 f"{self.diagnostics()}")

    def access_entries(self):
        text = self._read(self.access_log)
        end = text.rfind("\n")
        return [json.loads(l) for l in text[:end].splitlines() if l.strip()] if end >= 0 else []

    def wait_access(self, n=1, timeout=5):
        return wait_until(lambda: (e := self.access_entries()) and len(e) >= n and e, timeout,
                          what=f"{n} access log line(s)")

    def tcp_entries(self):
        """Access log lines of TCP connections (those with a conn_id)."""
        return [e for e in self.access_entries() if "conn_id" in e]

    def wait_tcp_access(self, n=1, timeout=5, where=None):
        """Waits for n TCP access log lines (those for which where(e) holds, if given)."""
        def got():
            e = [x for x in self.tcp_entries() if where is None or where(x)]
            return len(e) >= n and e
        try:
            return wait_until(got, timeout, what=f"{n} TCP access log line(s)")
        except TimeoutError:
            raise AssertionError(f"expected {n} TCP access log line(s) within {timeout}s, "
                                 f"have: {self.tcp_entries()[-10:]}\n"
                                 f"{self.diagnostics()}") from None

    def security_entries(self):
        """The security log (one JSON object per rule hit), complete lines only."""
        text = self._read(self.security_log)
        end = text.rfind("\n")
        return [json.loads(l) for l in text[:end].splitlines() if l.strip()] if end >= 0 else []

    def wait_security(self, n=1, timeout=5, where=None):
        """Waits for n security log lines (those for which where(e) holds, if given)."""
        def got():
            e = [x for x in self.security_entries() if where is None or where(x)]
            return len(e) >= n and e
        try:
            return wait_until(got, timeout, what=f"{n} security log line(s)")
        except TimeoutError:
            raise AssertionError(f"expected {n} security log line(s) within {timeout}s, have: "
                                 f"{self.security_entries()[-10:]}\n"
                                 f"{self.diagnostics()}") from None

    def rules_stats(self, timeout=5):
        """SIGUSR2, then the rules-stats.json it writes in data_dir (parsed)."""
        path = self.dir / "data" / "rules-stats.json"
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        start = len(self.log_lines())
        self.send_signal(signal.SIGUSR2)
        try:
            wait_until(path.exists, timeout, what=f"{path} after SIGUSR2")
        except TimeoutError:
            raise AssertionError(f"no {path} within {timeout}s of SIGUSR2\n"
                                 f"{self.diagnostics()}") from None
        errors = [l for l in self.log_lines()[start:] if "[error]" in l]
        assert not errors, f"SIGUSR2 logged errors: {errors}"
        return json.loads(path.read_text())

    def reload(self, expect_ok=True, timeout=10, settle=0.3):
        """SIGHUP, then waits for moatd to log the outcome. Returns the new log lines.

        The contract does not fix the wording: success is a new line mentioning "reload" with
        no [error] line among the new ones; failure is a new [error] line.
        """
        start = len(self.log_lines())
        self.send_signal(signal.SIGHUP)
        if expect_ok:
            self.wait_log(r"(?i)reload", timeout=timeout, start=start)
        else:
            self.wait_log(r"\[error\]", timeout=timeout, start=start)
        time.sleep(settle)
        new = self.log_lines()[start:]
        if expect_ok:
            errors = [l for l in new if "[error]" in l]
            assert not errors, f"reload logged errors: {errors}"
        assert self.running, f"moatd died on reload\n{self.diagnostics()}"
        return new

    def sanitizer_reports(self):
        text = self.stderr_text() + "\n" + self._read(self.error_log)
        return [m for m in SANITIZER_MARKERS if m in text]

    def diagnostics(self):
        def tail(path, n=40):
            return "\n".join(self._read(path).splitlines()[-n:])
        out = (f"--- moatd config {self.conf}:\n{self._read(self.conf)}\n"
               f"--- error log (tail):\n{tail(self.error_log)}\n"
               f"--- stderr (tail):\n{tail(self.stderr_path)}\n"
               f"--- stdout (tail):\n{tail(self.stdout_path)}")
        if self.security_log.exists():
            out += f"\n--- security log (tail):\n{tail(self.security_log, 20)}"
        return out

    # -- addressing -----------------------------------------------------------------------

    def url(self, path="/", host="alpha.test"):
        return f"https://{host}:{self.port}{path}"


def check_binary():
    """The moatd binary from $MOATD, or a clear reason why it cannot be used."""
    path = os.environ.get("MOATD")
    if not path:
        return None, ("MOATD is not set: run `make e2e`, or set MOATD to the absolute path of "
                      "the moatd binary (e.g. MOATD=$PWD/build/release/moatd)")
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    if not os.path.isfile(path):
        return None, f"MOATD={path} does not exist (build it first: make)"
    if not os.access(path, os.X_OK):
        return None, f"MOATD={path} is not executable"
    return path, None
