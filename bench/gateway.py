"""``python -m bench gateway``: the live stream fanned out to 100 and 1,000 WebSocket clients.

One ``conveyor gateway`` process against its own Redis; the clients and the publisher run in
this process (asyncio, the ``websockets`` client, no compression). Each message carries its
publish time; a client notes when it arrives.

- throughput: N messages published as fast as Redis takes them; deliveries per second from
  the first publish to the last delivery (N x clients deliveries in all);
- latency: publish -> client at a steady rate, p50 and p99 over every delivery.

Beside it, the same runs against a bare fan-out server (Redis pub/sub -> ``websockets``
``broadcast()``, no HTTP framework, no per-client buffers): what Python WebSockets do on this
machine with nothing else in the way, the ceiling for the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from conveyor.local_servers import RedisServer, find_binary, free_port
from conveyor.tables import render

CHANNEL = "conveyor:live:bench"

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from websockets.asyncio.server import broadcast, serve

    async def main(redis_url, port):
        clients = set()

        async def handler(ws):
            clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                clients.discard(ws)

        async with serve(handler, "127.0.0.1", port, compression=None):
            pubsub = aioredis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
            await pubsub.psubscribe("conveyor:live:*")
            print("ready", flush=True)
            async for message in pubsub.listen():
                broadcast(clients, message["data"].decode())

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@dataclass
class Result:
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float


def run(args: argparse.Namespace) -> int:
    binary = find_binary("redis-server")
    if binary is None:
        print("bench: redis-server is needed: run hack/bootstrap.sh", file=sys.stderr)
        return 3
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-gateway-"))
    server = RedisServer(binary, work / "redis").start()
    try:
        return asyncio.run(_bench(server.url, args))
    finally:
        server.stop()


async def _bench(redis_url: str, args: argparse.Namespace) -> int:
    rows = []
    counts = [int(c) for c in args.clients.split(",")]
    for name, start in (("conveyor gateway", _start_gateway), ("bare broadcast", _start_bare)):
        for clients in counts:
            proc, ws_url = await asyncio.to_thread(start, redis_url)
            try:
                result = await _measure(redis_url, ws_url, clients, args)
            finally:
                proc.terminate()
                proc.wait(timeout=15)
            rows.append((name, clients, result))
            print(
                f"  {name}, {clients} clients: {result.deliveries_per_s:,.0f} deliveries/s, "
                f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms",
                flush=True,
            )
    bare = {c: r for n, c, r in rows if n == "bare broadcast"}
    table = [
        (
            name,
            f"{clients:,}",
            f"{r.deliveries_per_s:,.0f}",
            f"{r.deliveries_per_s / clients:,.0f}",
            f"{r.deliveries_per_s / bare[clients].deliveries_per_s:.2f}x",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
        )
        for name, clients, r in rows
    ]
    print()
    print(
        f"Live stream fan-out: {args.messages:,} messages published at once (throughput), then "
        f"{args.rate}/s for {args.seconds} s (latency); clients and publisher in one process."
    )
    print()
    headers = ("server", "clients", "deliveries/s", "messages/s", "x bare", "p50 ms", "p99 ms")
    print(render(headers, table, figures=True))
    return 0


def _start_gateway(redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PROBE_PORT": "0"}
    env["GATEWAY_CLIENT_BUFFER"] = "100000"  # measure throughput, not the slow-client rule
    cli = [sys.executable, "-m", "conveyor.cli", "--log-level", "WARNING", "gateway"]
    proc = subprocess.Popen([*cli, "--host", "127.0.0.1", "--port", str(port)], env=env)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc, f"ws://127.0.0.1:{port}/ws"
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the gateway did not become ready; see its output above")


def _start_bare(redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_SERVER, redis_url, str(port)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    return proc, f"ws://127.0.0.1:{port}/"


async def _measure(redis_url: str, ws_url: str, clients: int, args: argparse.Namespace) -> Result:
    sockets: list[ClientConnection] = []
    for _ in range(clients):
        ws = await connect(ws_url, compression=None, max_queue=None, open_timeout=30)
        sockets.append(ws)
    if "/ws" in ws_url:  # the gateway greets each client with its subscription
        await asyncio.gather(*(ws.recv() for ws in sockets))
    await asyncio.sleep(0.5)
    r = aioredis.Redis.from_url(redis_url)
    try:
        throughput = await _throughput(r, sockets, args.messages)
        latencies = await _latency(r, sockets, args.rate, args.seconds)
    finally:
        await r.aclose()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    latencies.sort()
    return Result(
        deliveries_per_s=throughput,
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[int(len(latencies) * 0.99) - 1],
    )


async def _drain(ws: ClientConnection, n: int, latencies: list[float] | None) -> float:
    """Receive ``n`` messages; return when the last arrived."""
    for _ in range(n):
        message = json.loads(await ws.recv())
        if latencies is not None:
            latencies.append((time.time_ns() - message["sent_ns"]) / 1e6)
    return time.perf_counter()


def _event(n: int) -> str:
    return json.dumps(
        {"kind": "realtime", "machine": "bench", "values": {"n": n}, "sent_ns": time.time_ns()}
    )


async def _throughput(r: aioredis.Redis, sockets: list[ClientConnection], n: int) -> float:
    receivers = [asyncio.create_task(_drain(ws, n, None)) for ws in sockets]
    started = time.perf_counter()
    for first in range(0, n, 100):
        pipe = r.pipeline(transaction=False)
        for i in range(first, min(n, first + 100)):
            pipe.publish(CHANNEL, _event(i))
        await pipe.execute()
    finished = max(await asyncio.gather(*receivers))
    return n * len(sockets) / (finished - started)


async def _latency(
    r: aioredis.Redis, sockets: list[ClientConnection], rate: int, seconds: float
) -> list[float]:
    n = int(rate * seconds)
    latencies: list[float] = []
    receivers = [asyncio.create_task(_drain(ws, n, latencies)) for ws in sockets]
    started = time.perf_counter()
    for i in range(n):
        await r.publish(CHANNEL, _event(i))
        delay = started + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*receivers)
    return latencies
