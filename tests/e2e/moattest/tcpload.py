"""Many TLS devices at once, in one process (run as a script by 60_tcp_test.py):

    python3 tcpload.py --port P --conns N --size BYTES --ca CA --cert C --key K --sni HOST

Opens N connections (at most --handshakes handshakes in flight), sends each `size` random
bytes and reads them back, then prints one JSON line {"ready": ok, "failed": [...]} and keeps
every connection open until a line arrives on stdin; then closes them all (close_notify) and
prints {"done": ok, "failed": [...], "ports": [...]}. Errors are reported, never raised.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys


async def main(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    gate = asyncio.Semaphore(a.handshakes)
    go = asyncio.Event()
    failed = []
    ports = []
    ready = []

    async def one(i):
        writer = None
        try:
            async with gate:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(a.host, a.port, ssl=ctx, server_hostname=a.sni,
                                            ssl_handshake_timeout=a.timeout),
                    a.timeout)
            port = writer.get_extra_info("sockname")[1]
            data = os.urandom(a.size)
            writer.write(data)
            await writer.drain()
            back = await asyncio.wait_for(reader.readexactly(a.size), a.timeout)
            if back != data:
                failed.append(f"conn {i}: echoed bytes differ")
                return
            ready.append(i)
            await go.wait()
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), a.timeout)
            ports.append(port)
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            failed.append(f"conn {i}: {e!r}")
            if writer is not None:
                writer.close()

    tasks = [asyncio.create_task(one(i)) for i in range(a.conns)]

    async def report_ready():
        while len(ready) + len(failed) < a.conns:
            await asyncio.sleep(0.05)
        print(json.dumps({"ready": len(ready), "failed": failed[:20],
                          "nfailed": len(failed)}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        go.set()

    await asyncio.gather(report_ready(), *tasks)
    print(json.dumps({"done": len(ports), "failed": failed[:20], "nfailed": len(failed),
                      "ports": ports}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--sni", default="alpha.test")
    p.add_argument("--handshakes", type=int, default=50)
    p.add_argument("--timeout", type=float, default=30)
    asyncio.run(main(p.parse_args()))
