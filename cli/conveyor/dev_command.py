"""``conveyor dev``: the whole pipeline on this machine, without a cluster.

Starts, as supervised child processes on loopback: a Redis server (AOF on) and a Mosquitto
broker (persistence on) unless ``REDIS_URL`` / ``MQTT_BROKER_URL`` point elsewhere, an InfluxDB
server when one is installed (``hack/tools.sh influxd``), the ingestor, a worker per default
queue with its default concurrency, the gateway and a plant simulator. It prints the
dashboard's URL and a one-screen summary of the queues; Ctrl-C stops the simulator, then the
ingestor and workers (they drain), the gateway, and last the servers, and leaves no process
behind. Everything is kept in ``--data-dir``, so a restart finds its queues again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from conveyor_messages import DEFAULT_QUEUES

from conveyor.default_policies import write_default_policies
from conveyor.local_servers import (
    ChildServer,
    InfluxServer,
    MosquittoServer,
    RedisServer,
    find_binary,
    free_port,
    influxd_binary,
)
from conveyor.settings import SettingsError
from conveyor.tables import render
from reliable_queue import QueueClient, QueueUnavailable

RESTARTS_PER_MINUTE = 5


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "conveyor" / "dev"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dev",
        help="run the whole pipeline locally: servers, ingestor, workers, gateway, simulator",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help=f"where the servers keep their data and the services their logs "
        f"(default {default_data_dir()})",
    )
    p.add_argument("--port", type=int, default=8000, help="the dashboard's port (0: any free)")
    p.add_argument("--machines", type=int, default=10, help="simulated machines (default 10)")
    p.add_argument(
        "--rate", type=float, default=2.0, help="realtime messages per machine per second"
    )
    p.add_argument(
        "--history",
        type=float,
        default=0,
        metavar="SECONDS",
        help="the simulator first publishes this many seconds of the past (e.g. 86400: a day "
        "of trends and control charts to look at at once)",
    )
    p.add_argument("--no-simulator", action="store_true", help="publish nothing by itself")
    p.add_argument("--summary-every", type=float, default=2.0, help="seconds between summaries")
    p.set_defaults(run=cmd_dev)


@dataclass
class Service:
    """One ``conveyor`` command as a child process, restarted when it dies."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)
    given_up: bool = False

    def start(self) -> None:
        self.starts = [t for t in self.starts if time.monotonic() - t < 60] + [time.monotonic()]
        log: IO[bytes] = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "--log-format", "json", *self.args],
            stdout=log,
            stderr=log,
            env=self.env,
            start_new_session=True,  # Ctrl-C is ours to pass on, in order
        )
        log.close()

    def check(self) -> str | None:
        """Restart it if it exited; a line to print when something happened."""
        if self.proc is None or self.given_up or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        if len(self.starts) >= RESTARTS_PER_MINUTE:
            self.given_up = True
            return (
                f"{self.name} exited with code {code} {RESTARTS_PER_MINUTE} times in a minute; "
                f"not restarting it. See {self.log_path}"
            )
        self.start()
        return f"{self.name} exited with code {code}; restarted it (log: {self.log_path})"

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def cmd_dev(args: argparse.Namespace) -> int:
    data = args.data_dir.expanduser().resolve()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    servers: list[ChildServer] = []
    services: list[Service] = []
    try:
        port = args.port or free_port()
        if not _port_free(port):
            raise SettingsError(
                f"port {port} is in use: pass --port with another, or --port 0 for any free one"
            )
        env = _start_servers(data, servers)
        async with QueueClient.from_url(env["REDIS_URL"]) as client:
            await write_default_policies(client)
        env["GATEWAY_API_TOKEN"] = _api_token(data)
        ingest_probe = free_port()
        ingest_env = {"MQTT_CLIENT_ID": "conveyor-dev-ingestor", "PROBE_PORT": str(ingest_probe)}
        plan = [("ingestor", ["ingest"], ingest_env)]
        plan += [(f"worker {q.name}", ["work", "--queue", q.name], {}) for q in DEFAULT_QUEUES]
        plan += [("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(port)], {})]
        if not args.no_simulator:
            sim = ["simulate", "--machines", str(args.machines), "--rate", str(args.rate)]
            if args.history:
                sim += ["--history", str(args.history)]
            plan += [("simulator", sim, {})]
        for name, argv, extra in plan:
            if name == "simulator":
                # The broker drops what is published before anyone subscribed (on a first
                # start the ingestor's persistent session does not exist yet).
                await _wait_ready(ingest_probe, services[0])
            log_path = data / "logs" / f"{name.replace(' ', '-')}.log"
            service = Service(name, argv, {**env, **extra}, log_path)
            service.start()
            services.append(service)
        header = "\n".join(
            (
                f"Conveyor dev: dashboard at http://127.0.0.1:{port}/",
                f"  API token (dead-letter replay): {env['GATEWAY_API_TOKEN']}",
                f"  Redis {env['REDIS_URL']}   MQTT {env['MQTT_BROKER_URL']}",
                f"  logs in {data / 'logs'}; stop with Ctrl-C",
            )
        )
        print(header, flush=True)
        await _watch(env["REDIS_URL"], services, args.summary_every, header)
    finally:
        # Producers first, then consumers (they drain), then what everything talks to.
        for service in reversed(services):
            service.stop()
        for server in reversed(servers):
            server.stop()
    print("Conveyor dev stopped.", flush=True)
    return 0


def _start_servers(data: Path, servers: list[ChildServer]) -> dict[str, str]:
    """Redis, Mosquitto and InfluxDB unless given; the environment every service gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "PROBE_"))}
    env.update(PROBE_HOST="127.0.0.1", PROBE_PORT="0")  # several services on one machine
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    else:
        binary = find_binary("redis-server")
        if binary is None:
            raise SettingsError(
                "redis-server is not installed: run hack/bootstrap.sh, or set REDIS_URL"
            )
        redis = RedisServer(binary, data / "redis", appendonly=True).start()
        servers.append(redis)
        env["REDIS_URL"] = redis.url
    if not os.environ.get("MQTT_BROKER_URL"):
        binary = find_binary("mosquitto")
        if binary is None:
            raise SettingsError(
                "mosquitto is not installed: run hack/bootstrap.sh, or set MQTT_BROKER_URL"
            )
        broker = MosquittoServer(binary, data / "mosquitto").start()
        servers.append(broker)
        env["MQTT_BROKER_URL"] = broker.url
    if not os.environ.get("INFLUX_URL"):
        binary = influxd_binary()
        if binary is None:
            print(
                "WARNING: no InfluxDB here (build one with hack/tools.sh influxd, or set "
                "INFLUX_URL): realtime, SPC and tech points are NOT stored. The cache, the live "
                "stream and alerts work.",
                file=sys.stderr,
                flush=True,
            )
        else:
            influx = InfluxServer(binary, data / "influxdb").start()
            servers.append(influx)
            env.update(INFLUX_URL=influx.url, INFLUX_BUCKET=influx.bucket)
    return env


async def _wait_ready(port: int, service: Service, timeout: float = 30) -> None:
    """Until the service's /readyz answers 200 (for the ingestor: broker and Redis up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc is not None and service.proc.poll() is not None:
            break
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    print(f"{service.name} is not ready; starting the rest anyway (log: {service.log_path})")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _api_token(data: Path) -> str:
    """One token per data directory, kept so the dashboard's saved token stays valid."""
    path = data / "api-token"
    if os.environ.get("GATEWAY_API_TOKEN"):
        return os.environ["GATEWAY_API_TOKEN"]
    if not path.exists():
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()


async def _watch(redis_url: str, services: list[Service], every: float, header: str) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    previous: dict[str, int] = {}
    last = time.monotonic()
    async with QueueClient.from_url(redis_url) as client:
        while not stopping.is_set():
            for service in services:
                if note := service.check():
                    print(note, flush=True)
            now = time.monotonic()
            try:
                names = {q.name for q in DEFAULT_QUEUES} | set(await client.queues())
                stats = await client.stats(sorted(names))
            except QueueUnavailable as exc:
                print(f"Redis: {exc}", flush=True)
            else:
                _summary(stats, previous, now - last, services, header)
                previous = {n: q["completed"] for n, q in stats["queues"].items()}
            last = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)


def _summary(
    stats: dict[str, dict[str, dict[str, int]]],
    previous: dict[str, int],
    elapsed: float,
    services: list[Service],
    header: str,
) -> None:
    rows = []
    for name, q in stats["queues"].items():
        done = q["completed"] - previous.get(name, q["completed"])
        rows.append(
            (
                name,
                f"{q['pending']:,}",
                f"{q['processing']:,}",
                f"{q['failed']:,}",
                f"{done / elapsed if previous and elapsed > 0 else 0:,.1f}",
                f"{q['completed']:,}",
            )
        )
    table = render(
        ("QUEUE", "PENDING", "PROCESSING", "DEAD", "DONE/S", "COMPLETED"), rows, figures=True
    )
    down = [s.name for s in services if s.proc is None or s.proc.poll() is not None]
    status = f"services down: {', '.join(down)}" if down else "all services running"
    if sys.stdout.isatty():
        print(f"\033[H\033[J{header}\n")  # one screen, redrawn
    print(f"{time.strftime('%H:%M:%S')}  {status}\n{table}\n", flush=True)
