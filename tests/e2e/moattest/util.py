"""Small shared helpers: free ports, polling, command execution with a deadline."""

import collections
import socket
import subprocess
import time


_recent_ports = collections.deque(maxlen=512)


def free_port(host="127.0.0.1"):
    """A TCP port that nothing listens on right now (bind to 0 and release it), and not one
    handed out lately: the kernel may give the same port to two binds in a row, and a moatd
    needs several distinct ones (listeners, admin API) before it binds any."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _recent_ports:
            break
    _recent_ports.append(port)
    return port


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value, which is returned; raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run(args, timeout=30, check=True, **kw):
    """subprocess.run with captured text output and a mandatory deadline."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    proc = subprocess.run(args, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(map(str, args))}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def listening_ports():
    """Local TCP ports in LISTEN state, from /proc/net/tcp and tcp6 (no connection needed)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def tcp_refused(host, port, timeout=1.0):
    """True if a TCP connect to host:port is refused right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()
    return False
