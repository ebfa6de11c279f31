#!/usr/bin/env python3
"""Holds N SSE clients on the gateway's stream for the soak (stdlib asyncio only, no aiohttp).

Usage: soak_sse.py HOST:PORT N STATS_FILE TOKEN [TOKEN...]
Client i uses TOKEN[i % len]. A client whose stream ends or breaks reconnects after 2 s with
Last-Event-ID, as EventSource does. Every 10 s it rewrites STATS_FILE with one JSON object:
connected clients, frames received, reconnects, non-200 answers. Runs until SIGTERM/SIGINT.
"""

import asyncio
import json
import signal
import sys


class Stats:
    def __init__(self):
        self.connected = 0
        self.frames = 0
        self.reconnects = 0
        self.refused = 0
        self.last_error = ""


async def client(host, port, token, stats, stop):
    last_id = None
    first = True
    while not stop.is_set():
        if not first:
            stats.reconnects += 1
            await asyncio.sleep(2)
        first = False
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            head = (
                "GET /api/dashboard/followup-stream HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\n"
                "Accept: text/event-stream\r\n"
            )
            if last_id:
                head += f"Last-Event-ID: {last_id}\r\n"
            writer.write((head + "\r\n").encode())
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                stats.refused += 1
                stats.last_error = status.decode(errors="replace").strip()
                continue
            while (await reader.readline()) not in (b"\r\n", b""):
                pass  # response headers
            stats.connected += 1
            try:
                # Chunked body: the chunk-size lines are skipped; only SSE fields matter.
                while not stop.is_set():
                    line = await reader.readline()
                    if not line:
                        break
                    if line.startswith(b"id:"):
                        last_id = line[3:].strip().decode()
                        stats.frames += 1
            finally:
                stats.connected -= 1
        except (OSError, asyncio.IncompleteReadError) as err:
            stats.last_error = repr(err)
        finally:
            if writer is not None:
                writer.close()


async def report(path, stats, stop):
    while not stop.is_set():
        with open(path, "w") as f:
            json.dump(vars(stats), f)
        try:
            await asyncio.wait_for(stop.wait(), 10)
        except asyncio.TimeoutError:
            pass
    with open(path, "w") as f:
        json.dump(vars(stats), f)


async def main():
    target, n, path, tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    host, port = target.rsplit(":", 1)
    stats, stop = Stats(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(client(host, int(port), tokens[i % len(tokens)], stats, stop))
        for i in range(n)
    ]
    reporter = asyncio.create_task(report(path, stats, stop))
    await stop.wait()
    await reporter  # the final figures, taken while the clients are still connected
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
