#!/usr/bin/env python3
"""Open N TLS keep-alive connections to HOST:PORT, make one request on each,
then hold them all idle until the file DONE exists (or HOLD seconds pass).

Servers close idle keep-alive connections after different times (nginx 75 s,
portcullis 10 s), and opening 10 000 TLS connections from Python takes longer
than that. So that both keep every connection until the measurement, each held
connection repeats its small request every KEEPALIVE_EVERY seconds (default 5,
a random phase per connection; 0 turns it off): between those requests the
connection is idle at the server.

Used by benches/load/compare.sh to measure a server's resident memory with
10 000 idle TLS keep-alive connections. Prints progress to stderr and writes
the number of connections that completed their request to READY once all
attempts have finished.

Usage: idle_conns.py HOST PORT PATH N READY DONE [HOLD_SECONDS]
"""

import asyncio
import os
import random
import ssl
import sys


async def request(reader, writer, path):
    """One GET; True on a complete 200 response."""
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
    return head.startswith(b"HTTP/1.1 200")


async def keep(reader, writer, path, every, lost):
    """Repeats the request every `every` seconds until cancelled."""
    await asyncio.sleep(random.uniform(0, every))
    try:
        while True:
            if not await request(reader, writer, path):
                break
            await asyncio.sleep(every)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    lost.append(writer)


async def one(host, port, path, ctx, sem, held, keepers, lost):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"),
                timeout=30,
            )
            if not await request(reader, writer, path):
                writer.close()
                return
            held.append(writer)
            every = float(os.environ.get("KEEPALIVE_EVERY", "5"))
            if every > 0:
                keepers.append(asyncio.create_task(keep(reader, writer, path, every, lost)))
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
    held, keepers, lost = [], [], []
    tasks = [
        asyncio.create_task(one(host, int(port), path, ctx, sem, held, keepers, lost))
        for _ in range(int(n))
    ]
    # Opening is capped (a slow machine): what is open by then is measured.
    _, pending = await asyncio.wait(tasks, timeout=float(os.environ.get("OPEN_WITHIN", "240")))
    for t in pending:
        t.cancel()
    if pending:
        print(f"idle_conns: {len(pending)} connections not open in time", file=sys.stderr)
    ok = [w for w in held if w is not None]
    if lost:
        print(f"idle_conns: {len(lost)} held connections were closed", file=sys.stderr)
    with open(ready + ".tmp", "w") as f:
        f.write(f"{len(ok) - len(lost)}\n")
    os.rename(ready + ".tmp", ready)
    waited = 0.0
    while not os.path.exists(done) and waited < hold:
        await asyncio.sleep(0.2)
        waited += 0.2
    for k in keepers:
        k.cancel()
    for w in ok:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
