"""Redis (and later other servers) as child processes on free loopback ports.

Used by the tests' fixtures, by the benchmarks (``bench/``) and by ``conveyor dev``: each
starts its own servers so that nothing depends on what happens to run on the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def find_binary(name: str) -> str | None:
    """``name`` on PATH or in /usr/sbin (where Debian puts mosquitto), else None."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            port -= 20000 if port > 30000 else 0
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def wait_for_port(
    port: int, *, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


QUIET: dict[str, Any] = {
    "stdout": subprocess.DEVNULL,
    "stderr": subprocess.DEVNULL,
    # A session of its own: Ctrl-C in a terminal reaches whoever started it, who stops it in
    # order (``conveyor dev`` stops the services before the servers they need).
    "start_new_session": True,
}


class ChildServer:
    """A server process of ours; ``stop`` ends it (SIGTERM, or SIGKILL with ``kill``)."""

    proc: subprocess.Popen[bytes] | None

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc = None


@dataclass
class RedisServer(ChildServer):
    """One redis-server process; ``stop``/``start`` keep its data directory and port."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.workdir / "redis.log"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, **QUIET)
        wait_for_port(self.port, proc=self.proc)
        self._wait_loaded()
        return self

    def _wait_loaded(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise TimeoutError("redis-server did not finish loading")


@dataclass
class RedisClusterServers:
    """A Redis Cluster of ``size`` masters, no replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)


def start_redis_cluster(
    binary: str, cli: str, workdir: Path, *, size: int = 3
) -> RedisClusterServers:
    nodes = [
        RedisServer(
            binary,
            workdir / f"node{i}",
            port=free_cluster_port(),
            extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        ).start()
        for i in range(size)
    ]
    addrs = [f"127.0.0.1:{n.port}" for n in nodes]
    subprocess.run(
        [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [
            subprocess.run(
                [cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True
            ).stdout
            for n in nodes
        ]
        if all("cluster_state:ok" in s for s in states):  # every node agrees, not just one
            return RedisClusterServers(nodes)
        time.sleep(0.1)
    raise TimeoutError("Redis Cluster did not reach cluster_state:ok")


@dataclass
class MosquittoServer(ChildServer):
    """One mosquitto broker on loopback, with persistence in ``workdir``.

    ``max_queued_messages 0`` lifts mosquitto's default cap of 1000 messages queued for an
    offline persistent session: with the default, a consumer that is down for a burst loses
    everything past the first 1000 at the broker. Production brokers need the same setting.
    """

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "max_packet_size 10485760\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            # Run as root, mosquitto would switch to the 'mosquitto' user, which cannot
            # write to this directory; stay the user that started it.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], **QUIET)
        wait_for_port(self.port, proc=self.proc)
        return self


@dataclass
class InfluxServer(ChildServer):
    """An InfluxDB 1.8 server (built by hack/tools.sh) on loopback, with a ``conveyor`` database.

    It serves the v2 write API, where the bucket is ``<database>/<retention policy>`` and the
    token ``<user>:<password>`` (empty with authentication off).
    """

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    database: str = "conveyor"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bucket(self) -> str:
        return f"{self.database}/autogen"

    def start(self) -> InfluxServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{free_port()}"\n'
            f'[meta]\n  dir = "{self.workdir}/meta"\n'
            f'[data]\n  dir = "{self.workdir}/data"\n  wal-dir = "{self.workdir}/wal"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        log = (self.workdir / "influxd.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-config", str(conf)], stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        wait_for_port(self.port, proc=self.proc, timeout=30)
        # An open port is not yet an answering server: influxd may reset the first connections
        # while it starts. Until it answers (30 s), or exits.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.query(f"CREATE DATABASE {self.database}")
                return self
            except (ConnectionError, urllib.error.URLError) as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"influxd did not answer on port {self.port}: {exc} "
                        f"(log: {self.workdir / 'influxd.log'})"
                    ) from exc
                time.sleep(0.1)

    def write(self, lines: list[str]) -> None:
        """Write points in line protocol, times in milliseconds."""
        import urllib.parse
        import urllib.request

        params = urllib.parse.urlencode({"db": self.database, "precision": "ms"})
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.url}/write?{params}", data="\n".join(lines).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            if resp.status != 204:
                raise RuntimeError(f"InfluxDB refused the write: {resp.status} {resp.read()!r}")

    def query(self, q: str) -> list[dict[str, object]]:
        """Run an InfluxQL query; the series of the first statement."""
        import json
        import urllib.parse
        import urllib.request

        data = urllib.parse.urlencode({"q": q, "db": self.database}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as resp:  # noqa: S310
            body = json.loads(resp.read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxDB: {result['error']}")
        series: list[dict[str, object]] = result.get("series", [])
        return series


def influxd_binary() -> str | None:
    """influxd from hack/tools.sh's cache, or on PATH."""
    cached = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "conveyor"
        / "bin"
        / "influxd"
    )
    return str(cached) if os.access(cached, os.X_OK) else find_binary("influxd")


def tools_dir() -> Path:
    """Where hack/tools.sh puts the Go-built tools."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "conveyor" / "bin"
