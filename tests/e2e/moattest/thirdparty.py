"""Real TCP origins behind moatd's tcp listeners: Debian's mosquitto (an MQTT broker on a
plain loopback listener, logging every connection) and HAProxy in TCP mode with
`accept-proxy`, logging the addresses and TLVs it parsed from the PROXY v2 header."""

import pathlib
import re
import signal
import subprocess

from .util import free_port, listening_ports, run, wait_until

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_SUB = "mosquitto_sub"
MOSQUITTO_PUB = "mosquitto_pub"
HAPROXY = "/usr/sbin/haproxy"


class _Foreground:
    """A daemon run in the foreground with its output in a file, and a log to read from an
    offset (so each test sees only its own lines)."""

    log_path = None

    def _start(self, args, port, what):
        self.out = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self.proc.poll() is not None or port in listening_ports(),
                       timeout=10, what=f"{what} to listen")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"{what} failed to start:\n{self.diag()}")

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self):
        """An offset into the log: lines() from here on."""
        return len(self.log_text())

    def lines(self, since=0):
        text = self.log_text()[since:]
        end = text.rfind("\n")
        return text[:end].splitlines() if end >= 0 else []

    def wait_line(self, pattern, since=0, timeout=5):
        rx = re.compile(pattern)
        try:
            return wait_until(lambda: next((l for l in self.lines(since) if rx.search(l)), None),
                              timeout, what=f"/{pattern}/ in {self.log_path}")
        except TimeoutError:
            raise AssertionError(f"no line matching /{pattern}/ in {self.log_path} within "
                                 f"{timeout}s; since the mark:\n"
                                 + "\n".join(self.lines(since)[-30:])) from None

    def diag(self):
        out = []
        for p in (self.dir / "stdout.log", self.log_path):
            if p is not None and p.exists():
                out.append(f"--- {p}:\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.out.close()


class Mosquitto(_Foreground):
    """mosquitto 2 on 127.0.0.1:<port>, anonymous, logging everything to broker.log."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.dir / "broker.log"
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            "per_listener_settings false\n"
            "allow_anonymous true\n"
            f"listener {self.port} 127.0.0.1\n"
            f"log_dest file {self.log_path}\n"
            "log_type all\n"
            "connection_messages true\n"
            "persistence false\n"
            # as root mosquitto would switch to its own user, which cannot write our log
            "user root\n")
        self.url = f"tcp://127.0.0.1:{self.port}"
        self._start([MOSQUITTO, "-c", str(self.conf)], self.port, "mosquitto")

    def connects(self, since=0):
        """(client id, remote) for each CONNECT the broker accepted since the mark."""
        out = []
        for l in self.lines(since):
            m = re.search(r"New client connected from (\S+) as (\S+) ", l)
            if m:
                out.append((m.group(2), m.group(1)))
        return out

    def new_connections(self, since=0):
        return [l for l in self.lines(since) if "New connection from" in l]


def mqtt_tls_args(pki, cert, port, host="127.0.0.1"):
    """mosquitto_pub/sub arguments for a device going through moatd on `port`."""
    args = ["-h", host, "-p", str(port), "--cafile", str(pki.server_ca.cert)]
    if cert is not None:
        args += ["--cert", str(cert.cert), "--key", str(cert.key)]
    return args


class HAProxy(_Foreground):
    """HAProxy 2.6, TCP mode, `bind ... accept-proxy`, forwarding to `backend_port` and
    logging one line per connection with what the PROXY v2 header said:
        moat-pp ci=<src ip> cp=<src port> fi=<dst ip> fp=<dst port> authority=<SNI>
                uid=<unique id> uidhex=<unique id, hex> bytes=<to client> term=<state>
    (2.6 has fetches for the authority and unique-id TLVs only; the SSL TLVs are checked by
    the python parser in pp2.py.)"""

    LOG_RX = re.compile(r"moat-pp ci=(?P<ci>\S*) cp=(?P<cp>\S*) fi=(?P<fi>\S*) fp=(?P<fp>\S*) "
                        r"authority=(?P<authority>\S*) uid=(?P<uid>\S*) uidhex=(?P<uidhex>\S*) "
                        r"bytes=(?P<bytes>\S*) term=(?P<term>\S*)")

    def __init__(self, workdir, backend_port):
        self.dir = pathlib.Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.dir / "stdout.log"  # `log stdout` in the foreground
        self.conf = self.dir / "haproxy.cfg"
        self.conf.write_text(f"""\
global
    log stdout format raw local0 info
    maxconn 2000
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend pp
    bind 127.0.0.1:{self.port} accept-proxy
    log-format "moat-pp ci=%ci cp=%cp fi=%fi fp=%fp authority=%[fc_pp_authority] uid=%[fc_pp_unique_id] uidhex=%[fc_pp_unique_id,hex] bytes=%B term=%ts"
    default_backend echo
backend echo
    server s1 127.0.0.1:{backend_port}
""")
        check = run([HAPROXY, "-c", "-f", str(self.conf)], check=False, timeout=20)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejects its config:\n{check.stdout}{check.stderr}")
        self.url = f"tcp://127.0.0.1:{self.port}"
        self._start([HAPROXY, "-db", "-f", str(self.conf)], self.port, "haproxy")

    def entries(self, since=0):
        return [m.groupdict() for l in self.lines(since) if (m := self.LOG_RX.search(l))]

    def wait_entries(self, n=1, since=0, timeout=5):
        try:
            return wait_until(lambda: (e := self.entries(since)) and len(e) >= n and e, timeout,
                              what=f"{n} haproxy log line(s)")
        except TimeoutError:
            raise AssertionError(f"haproxy logged {len(self.entries(since))} connection(s), "
                                 f"expected {n}\n{self.diag()}") from None
