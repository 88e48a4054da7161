"""Time from a control-plane change to its enforcement on already-open connections
(bench/api.sh, part 3, and the device-change figures of part 2).

    trials.py --kind rule|quarantine --admin 127.0.0.1:PORT --token-file F --tenant T
              --port LISTENER_PORT --device ID CERT KEY SERVER_CA HOST --log MOATD_ERROR_LOG
              [--moatctl PATH] [--conns C] [--trials N] [--interval S] [--name-prefix P]
              [--out FILE]

Opens C keep-alive mTLS connections of the enrolled device ID and keeps them for every trial.

rule: per trial i, note t0, run `moatctl rule add T --name tI --expr
  'http.request.uri.path eq "/tI"' --action block` (the API address and token from MOAT_SERVER
  and MOAT_TOKEN_FILE), then send GET /tI on the open connections, round-robin, until each has
  answered 403: `first` is the first 403 - t0, `all` the moment every connection had one. Then
  the rule is deleted through the API and the same is timed until each answers 200 again
  (`undo`).
quarantine: the same with POST .../devices/ID/quarantine (through the API, t0 before the
  request) until GET /q answers 403 {"error":"quarantined"}, then .../release until 200. Also
  times a GET /v1/health sent 10 ms after the quarantine's answer, while moatd rebuilds.

The GETs are paced, one every --interval seconds (0.002): a closed loop would keep moatd's
worker busy on the core where its control thread compiles the change, and slow that down.
Before each trial every connection must get 200 for the path. moatd's error log gives the build
time of each generation ("store changes applied: generation N (built in X ms)"). A connection
that moatd closes is counted as dropped and reopened. Prints one key=value summary line; every
trial goes to --out.
"""

import argparse
import os
import subprocess
import sys
import time

from moatbench import Api, DeviceConn, LogTail, kv_line, median, percentile

POLL_TIMEOUT = 15.0
# the figures of a trial that are in seconds (written in ms)
SECONDS = ("api", "first", "all", "undo_api", "undo", "health")


class Trials:
    def __init__(self, args):
        self.a = args
        self.api = Api.from_token_file(args.admin, args.token_file)
        self.tail = LogTail(args.log)
        self.conns = [self.connect() for _ in range(args.conns)]
        self.dropped = 0
        self.rows = []

    def connect(self):
        _, cert, key, ca, host = self.a.device
        return DeviceConn(self.a.port, host, cert, key, ca)

    def get(self, k, path):
        try:
            return self.conns[k].get(path)
        except (OSError, ConnectionError):
            self.dropped += 1
            self.conns[k].close()
            self.conns[k] = self.connect()
            return self.conns[k].get(path)

    def poll_until(self, path, want, t0):
        """Round-robin GETs until every connection answered `want` once: (first, all, polls)
        in seconds after t0; None if not within POLL_TIMEOUT."""
        done = [False] * len(self.conns)
        first, polls, k = None, 0, 0
        deadline = time.monotonic() + POLL_TIMEOUT
        next_at = time.monotonic()
        while not all(done):
            if time.monotonic() > deadline:
                return None, None, polls
            if not done[k]:
                wait = next_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                next_at = max(next_at + self.a.interval, time.monotonic())
                st, body = self.get(k, path)
                polls += 1
                if st == want and (want != 403 or self.a.kind == "rule"
                                   or b"quarantined" in body):
                    done[k] = True
                    first = first if first is not None else time.monotonic() - t0
                elif st not in (200, 403):
                    raise RuntimeError(f"GET {path}: unexpected {st} {body[:200]!r}")
            k = (k + 1) % len(done)
        return first, time.monotonic() - t0, polls

    def expect_all(self, path, status):
        for k in range(len(self.conns)):
            st, body = self.get(k, path)
            if st != status:
                raise RuntimeError(f"before the trial, GET {path} answered {st} {body[:200]!r}")

    def build_ms(self):
        got = self.tail.wait_applied(1, timeout=POLL_TIMEOUT)
        return got[0][1] if got else float("nan")

    def rule_trial(self, i):
        name = f"{self.a.name_prefix}{i}"
        path = f"/{name}"
        self.expect_all(path, 200)
        self.tail.applied()
        env = dict(os.environ, MOAT_SERVER=f"http://{self.a.admin}",
                   MOAT_TOKEN_FILE=self.a.token_file)
        t0 = time.monotonic()
        r = subprocess.run([self.a.moatctl, "rule", "add", self.a.tenant, "--name", name,
                            "--expr", f'http.request.uri.path eq "{path}"', "--action",
                            "block"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, check=False)
        t_api = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"moatctl rule add: exit {r.returncode}: {r.stderr!r}")
        first, all_, polls = self.poll_until(path, 403, t0)
        build = self.build_ms()
        t1 = time.monotonic()
        self.api.ok("DELETE", f"/v1/tenants/{self.a.tenant}/rules/{name.lower()}",
                    status=(204,))
        undo_api = time.monotonic() - t1
        _, undo, _ = self.poll_until(path, 200, t1)
        undo_build = self.build_ms()
        return dict(api=t_api, first=first, all=all_, polls=polls, build=build,
                    undo_api=undo_api, undo=undo, undo_build=undo_build)

    def quarantine_trial(self, i):
        dev = f"/v1/tenants/{self.a.tenant}/devices/{self.a.device[0]}"
        self.expect_all("/q", 200)
        self.tail.applied()
        t0 = time.monotonic()
        self.api.ok("POST", f"{dev}/quarantine", {}, status=(200,))
        t_api = time.monotonic() - t0
        # the admin API while moatd rebuilds (its control thread does both)
        time.sleep(0.01)
        probe = Api(self.a.admin, None)
        th = time.monotonic()
        probe.ok("GET", "/v1/health")
        health = time.monotonic() - th
        probe.close()
        first, all_, polls = self.poll_until("/q", 403, t0)
        build = self.build_ms()
        t1 = time.monotonic()
        self.api.ok("POST", f"{dev}/release", {}, status=(200,))
        undo_api = time.monotonic() - t1
        _, undo, _ = self.poll_until("/q", 200, t1)
        undo_build = self.build_ms()
        return dict(api=t_api, first=first, all=all_, polls=polls, build=build,
                    undo_api=undo_api, undo=undo, undo_build=undo_build, health=health)

    def run(self):
        trial = self.rule_trial if self.a.kind == "rule" else self.quarantine_trial
        for i in range(1, self.a.trials + 1):
            row = trial(i)
            row["trial"] = i
            self.rows.append(row)
            if self.a.out:
                with open(self.a.out, "a", encoding="ascii") as f:
                    f.write(kv_line(kind=self.a.kind, **{
                        k: v * 1e3 if k in SECONDS and v is not None else v
                        for k, v in row.items()}) + "\n")

    def summary(self):
        def col(k, scale=1e3):
            return [r[k] * scale for r in self.rows if r.get(k) is not None
                    and r[k] == r[k]]

        def stats(k, scale=1e3):
            v = col(k, scale)
            return {f"{k}_p50_ms": percentile(v, 50), f"{k}_p99_ms": percentile(v, 99),
                    f"{k}_max_ms": max(v) if v else float("nan")}

        out = dict(kind=self.a.kind, trials=len(self.rows), conns=len(self.conns),
                   missed=sum(1 for r in self.rows if r["first"] is None or r["undo"] is None),
                   dropped=self.dropped,
                   over_1s=sum(1 for r in self.rows if r["first"] is None or r["all"] > 1.0))
        for k in ("first", "all", "api", "undo", "undo_api"):
            out.update(stats(k))
        for k in ("build", "undo_build"):
            out.update(stats(k, 1))
        out["polls_median"] = median(col("polls", 1))
        if self.a.kind == "quarantine":
            out.update(stats("health"))
        return kv_line(**out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=("rule", "quarantine"), required=True)
    p.add_argument("--admin", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--device", nargs=5, required=True,
                   metavar=("ID", "CERT", "KEY", "SERVER_CA", "HOST"))
    p.add_argument("--log", required=True)
    p.add_argument("--moatctl")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.002)
    p.add_argument("--name-prefix", default="t")
    p.add_argument("--out")
    args = p.parse_args()
    if args.kind == "rule" and not args.moatctl:
        p.error("--kind rule needs --moatctl")
    t = Trials(args)
    try:
        t.run()
    finally:
        if t.rows:
            print(t.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
