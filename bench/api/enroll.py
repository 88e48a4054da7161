"""Enrollments per second through the admin API (bench/api.sh, part 1).

    enroll.py --admin 127.0.0.1:PORT --token-file F --tenant T --mode factory|csr
              --clients C --count N [--csrs FILE] [--prefix P] [--pid MOATD_PID] [--log FILE]

C client processes, each with its own HTTP/1.1 keep-alive connection, enroll N devices in all
(POST /v1/tenants/T/devices, one after the other on each connection): factory mode (moatd
makes the key) or from the CSRs of FILE (made beforehand by setup.py csrs, so that making them
is not timed). The clock runs from the moment every client is connected and released at once
until the last answer. Every answer must be 201 with a certificate (and a key in factory mode).

Prints one key=value line: enrollments per second, latency percentiles, and the CPU used over
the run, in % of one core: the clients (the sum of their processes), moatd (--pid, all
threads) and everything else on the machine; with --log, the number of generations moatd
built during the run and their total build time (each batch of enrollments makes moatd rebuild
the tenant's registry).
"""

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time

from moatbench import Api, LogTail, busy_ticks, kv_line, percentile, proc_ticks, HZ


def client(addr, token, tenant, items, factory, barrier, results):
    api = Api(addr, token)
    api.ok("GET", "/v1/health")  # connected (and warm) before the clock starts
    lat, errors, first_error = [], 0, ""
    barrier.wait()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.monotonic()
    for body in items:
        t0 = time.monotonic()
        try:
            st, doc = api.request("POST", f"/v1/tenants/{tenant}/devices", body)
        except Exception as e:  # a failed request is counted, the run goes on
            st, doc = 0, {"error": repr(e)}
        t1 = time.monotonic()
        good = st == 201 and isinstance(doc, dict) and "certificate" in doc and (
            not factory or "key" in doc)
        if good:
            lat.append(t1 - t0)
        else:
            errors += 1
            first_error = first_error or f"{st} {json.dumps(doc)[:200]}"
    t_end = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    results.put((t_start, t_end, lat, errors, first_error, cpu))
    api.close()


def bodies(args):
    if args.mode == "csr":
        with open(args.csrs, encoding="ascii") as f:
            reqs = [json.loads(line) for line in f][: args.count]
        if len(reqs) < args.count:
            sys.exit(f"enroll.py: {args.csrs} has only {len(reqs)} CSRs")
    else:
        reqs = [{"id": f"{args.prefix}{i:06d}"} for i in range(1, args.count + 1)]
    for r in reqs:
        r.update({"model": "cam-x", "firmware": "2.3.1", "tags": ["outdoor", "batch-7"]})
    return reqs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--admin", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--mode", choices=("factory", "csr"), required=True)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--csrs")
    p.add_argument("--prefix", default="enroll-")
    p.add_argument("--pid", type=int)
    p.add_argument("--log")
    args = p.parse_args()

    with open(args.token_file, encoding="ascii") as f:
        token = f.read().strip()
    reqs = bodies(args)
    barrier = mp.Barrier(args.clients + 1)
    results = mp.Queue()
    procs = [mp.Process(target=client,
                        args=(args.admin, token, args.tenant, reqs[i :: args.clients],
                              args.mode == "factory", barrier, results))
             for i in range(args.clients)]
    for pr in procs:
        pr.start()
    tail = LogTail(args.log) if args.log else None
    barrier.wait()
    t0 = time.monotonic()
    m0 = proc_ticks(args.pid) if args.pid else 0
    b0, i0 = busy_ticks()
    out = [results.get() for _ in procs]
    t1 = time.monotonic()
    m1 = proc_ticks(args.pid) if args.pid else 0
    b1, i1 = busy_ticks()
    for pr in procs:
        pr.join()
    # generations built during the run, including the last one, which follows the last answer
    applied = []
    if tail is not None:
        time.sleep(0.3)
        applied = tail.applied()

    start = min(o[0] for o in out)
    end = max(o[1] for o in out)
    lat = [x for o in out for x in o[2]]
    errors = sum(o[3] for o in out)
    first_error = next((o[4] for o in out if o[4]), "")
    client_cpu = sum(o[5] for o in out)
    wall = end - start
    span = t1 - t0
    moatd_cpu = ((m1 or 0) - (m0 or 0)) / HZ
    other = max(0.0, (b1 - b0) / HZ - moatd_cpu - client_cpu)
    print(kv_line(mode=args.mode, clients=args.clients, count=len(reqs), ok=len(lat),
                  errors=errors, seconds=wall, per_second=len(lat) / wall if wall else 0.0,
                  lat_p50_ms=percentile(lat, 50) * 1e3, lat_p99_ms=percentile(lat, 99) * 1e3,
                  client_cpu_pct=client_cpu / span * 100, moatd_cpu_pct=moatd_cpu / span * 100,
                  other_cpu_pct=other / span * 100, irq_cpu_pct=(i1 - i0) / HZ / span * 100,
                  moatd_ms_per_enroll=moatd_cpu / len(lat) * 1e3 if lat else 0.0,
                  gens=len(applied), build_ms=sum(a[1] for a in applied),
                  build_ms_max=max((a[1] for a in applied), default=0.0)))
    if first_error:
        print(f"first error: {first_error}", file=sys.stderr)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
