"""moatd's start time and memory (bench/api.sh, part 2).

    ready.py --t0 EPOCH_SECONDS --pid PID --port LISTENER_PORT --admin 127.0.0.1:PORT
             [--device CERT KEY SERVER_CA HOST] [--settle S] [--timeout S]

The shell notes the time ($EPOCHREALTIME) just before it starts moatd and passes it as --t0.
This polls, every millisecond, until
  - the device listener accepts a TCP connection (listen_ms),
  - GET /v1/health answers 200 (health_ms),
  - with --device: a GET / of that device over mTLS gets a 2xx from the origin (served_ms),
then waits --settle seconds (1) and reads moatd's VmRSS and VmHWM. ready_ms is the later of the
first two: moatd accepts devices and its API answers. Prints one key=value line; exits 1 if
moatd did not get there within --timeout seconds (120) or exited.
"""

import argparse
import http.client
import os
import socket
import sys
import time

from moatbench import DeviceConn, kv_line, proc_status


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def healthy(addr):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        c.request("GET", "/v1/health")
        r = c.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        c.close()


def served(port, device):
    cert, key, ca, host = device
    try:
        d = DeviceConn(port, host, cert, key, ca, timeout=5)
    except OSError:
        return False
    try:
        st, _ = d.get("/")
        return 200 <= st < 300
    except (OSError, ConnectionError, ValueError):
        return False
    finally:
        d.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin", required=True)
    p.add_argument("--device", nargs=4, metavar=("CERT", "KEY", "SERVER_CA", "HOST"))
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()

    t = {"listen": None, "health": None, "served": None if args.device else -1}
    deadline = time.time() + args.timeout
    while any(v is None for v in t.values()):
        if not alive(args.pid):
            print(kv_line(ok=0, why="exited"))
            return 1
        if time.time() > deadline:
            print(kv_line(ok=0, why="timeout"))
            return 1
        if t["listen"] is None and accepts(args.port):
            t["listen"] = time.time()
        if t["health"] is None and healthy(args.admin):
            t["health"] = time.time()
        if t["served"] is None and t["listen"] is not None and served(args.port, args.device):
            t["served"] = time.time()
        time.sleep(0.001)
    ready = max(t["listen"], t["health"])
    time.sleep(args.settle)
    mem = proc_status(args.pid, "VmRSS", "VmHWM")

    def ms(v):
        return (v - args.t0) * 1e3 if v and v > 0 else -1.0

    print(kv_line(ok=1, listen_ms=ms(t["listen"]), health_ms=ms(t["health"]),
                  ready_ms=ms(ready), served_ms=ms(t["served"]),
                  rss_kb=mem.get("VmRSS", 0), hwm_kb=mem.get("VmHWM", 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
