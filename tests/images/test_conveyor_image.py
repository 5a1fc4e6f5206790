"""The Conveyor image, built here FROM a debootstrapped Debian base (hack/images.sh), runs
every command as a non-root user on a read-only root, and its ingestor and worker containers
move messages from the host's broker through the host's Redis into the host's InfluxDB."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from conveyor_plant.keys import latest_values
from redis.asyncio import Redis

from conveyor.local_servers import InfluxServer
from reliable_queue import QueueClient
from tests.helpers import ROOT, eventually, probe
from tests.mqtt import publish
from tests.servers import MosquittoServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.timeout(900)]
IMAGE = os.environ.get("CONVEYOR_IMAGE", "conveyor:dev")
# What the chart's pods enforce, so the image is tested as it runs there.
LOCKED_DOWN = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> str:
    """The image, (re)built by hack/images.sh: the base is cached, and Docker's layer cache
    makes a rebuild after a code change take seconds."""
    build = subprocess.run(
        ["bash", str(ROOT / "hack/images.sh"), "conveyor"],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
        env={**os.environ, "CONVEYOR_IMAGE": IMAGE},
    )
    if build.returncode != 0:
        message = f"hack/images.sh could not build {IMAGE}:\n{build.stderr[-3000:]}"
        if os.environ.get("CI") or "docker build failed" in build.stderr:
            pytest.fail(message)
        pytest.skip(message)  # no Docker engine here, outside CI
    return IMAGE


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        logs = docker("logs", "--tail", "30", name)
        print(f"--- {name}\n{logs.stdout}{logs.stderr}")
        docker("rm", "-f", name)


def test_every_command_answers_help(image: str) -> None:
    commands = ["ingest", "work", "operator", "gateway", "queues", "dlq", "policy", "enqueue"]
    script = "set -e; conveyor --help; " + "; ".join(f"conveyor {c} --help" for c in commands)
    out = docker("run", "--rm", *LOCKED_DOWN, "--entrypoint", "sh", image, "-c", script)
    assert out.returncode == 0, out.stderr
    for command in commands:
        assert f"usage: conveyor {command}" in out.stdout


def test_runs_as_a_numeric_non_root_user(image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"  # numeric, so runAsNonRoot can verify it
    assert config["Entrypoint"] == ["conveyor"]
    out = docker("run", "--rm", "--entrypoint", "id", image, "-u")
    assert out.stdout.strip() == "10001"


def test_a_bad_setting_says_what_to_fix(image: str) -> None:
    out = docker("run", "--rm", *LOCKED_DOWN, "-e", "REDIS_URL=localhost:6379", image, "queues")
    assert out.returncode == 2
    assert "REDIS_URL=localhost:6379: Value error, must start with redis://" in out.stderr


async def test_ingestor_and_worker_containers_move_messages(
    image: str,
    containers: list[str],
    client: QueueClient,
    redis_url: str,
    mosquitto: MosquittoServer,
    influx: InfluxServer,
    raw_redis: Redis,
) -> None:
    run_id = uuid.uuid4().hex[:8]
    common = [
        "run",
        "-d",
        *LOCKED_DOWN,
        "--network",
        "host",  # traffic stays on loopback
        "-e",
        f"REDIS_URL={redis_url}",
        "-e",
        "PROBE_HOST=127.0.0.1",
    ]
    probes: dict[str, int] = {}
    for name, args in {
        f"ingest-{run_id}": [
            "-e",
            f"MQTT_BROKER_URL={mosquitto.url}",
            "-e",
            f"MQTT_CLIENT_ID=image-test-{run_id}",
            image,
            "ingest",
        ],
        f"work-{run_id}": [
            "-e",
            f"INFLUX_URL={influx.url}",
            "-e",
            f"INFLUX_BUCKET={influx.bucket}",
            image,
            "work",
            "--queue",
            "mqtt_realtime",
        ],
    }.items():
        probes[name] = free_port()  # on the host's network, as the container is
        started = docker(*common, "-e", f"PROBE_PORT={probes[name]}", "--name", name, *args)
        assert started.returncode == 0, started.stderr
        containers.append(name)

    # The ingestor is ready once the broker granted its subscriptions and Redis answers.
    def ready(port: int) -> bool:
        answer = probe(port, "/readyz")
        return answer is not None and answer[0] == 200

    for name, port in probes.items():
        await eventually(
            functools.partial(ready, port),
            timeout=60,
            interval=0.2,
            what=f"container {name} ready on /readyz (its log is printed at teardown)",
        )
    ts = 1_750_000_000_000
    messages = [
        (f"press{i % 3}/realtime", json.dumps({"timestamp": ts + i, "temp": 20.0 + i}).encode())
        for i in range(30)
    ]
    assert await asyncio.to_thread(publish, mosquitto.port, messages) == 30

    async def processed() -> bool:
        return (await client.queue_stats("mqtt_realtime")).completed == 30

    await eventually(processed, timeout=60, what="30 jobs done by the worker container")
    [series] = influx.query("SELECT count(value) FROM realtime WHERE signal='temp'")
    assert series["values"][0][1] == 30  # type: ignore[index]
    latest = await raw_redis.hgetall(latest_values("press2"))
    assert json.loads(latest[b"temp"]) == 20.0 + 29
