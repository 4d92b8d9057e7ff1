#!/usr/bin/env python3
"""Open N TLS keep-alive connections to HOST:PORT, make one request on each,
then hold them all idle until the file DONE exists (or HOLD seconds pass).

Used by benches/load/compare.sh to measure a server's resident memory with
10 000 idle TLS keep-alive connections. Prints progress to stderr and writes
the number of connections that completed their request to READY once all
attempts have finished.

Usage: idle_conns.py HOST PORT PATH N READY DONE [HOLD_SECONDS]
"""

import asyncio
import os
import ssl
import sys


async def one(host, port, path, ctx, sem, held):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"),
                timeout=30,
            )
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: idle-conns\r\n\r\n".encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout=30)
            if not head.startswith(b"HTTP/1.1 200"):
                writer.close()
                return
            held.append(writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            held.append(None)
            if held.count(None) <= 3:
                print(f"idle_conns: connection failed: {e!r}", file=sys.stderr)


async def main():
    host, port, path, n, ready, done = sys.argv[1:7]
    hold = float(sys.argv[7]) if len(sys.argv) > 7 else 120.0
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sem = asyncio.Semaphore(200)
    held = []
    tasks = [asyncio.create_task(one(host, int(port), path, ctx, sem, held)) for _ in range(int(n))]
    # Opening is capped (a slow machine): what is open by then is measured.
    _, pending = await asyncio.wait(tasks, timeout=float(os.environ.get("OPEN_WITHIN", "240")))
    for t in pending:
        t.cancel()
    if pending:
        print(f"idle_conns: {len(pending)} connections not open in time", file=sys.stderr)
    ok = [w for w in held if w is not None]
    with open(ready + ".tmp", "w") as f:
        f.write(f"{len(ok)}\n")
    os.rename(ready + ".tmp", ready)
    waited = 0.0
    while not os.path.exists(done) and waited < hold:
        await asyncio.sleep(0.2)
        waited += 0.2
    for w in ok:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
