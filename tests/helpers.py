"""Small helpers shared by tests: polling with a deadline, running the CLI, and a worker's
``Context`` as ``conveyor work`` builds it.

``eventually`` is the one way a test waits: for a condition, with a deadline, saying what it
waited for and the last value it saw when the condition never came. ``wait_until`` is the
same loop for code that cannot await (sync tests, TestClient, kubectl).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar, overload

from conveyor_plant import PlantState
from conveyor_worker import Context, InfluxSink, SinkSettings, WorkerMetrics

from reliable_queue import QueueClient
from tests.servers import free_port

SIMULATED_MACHINE = "press-01"
"""The simulator's first machine: the one the ``simulated_past`` fixture publishes."""
SIMULATED_PAST_S = 7200
SIMULATED_STEP_S = 10
ROOT = Path(__file__).resolve().parents[1]
# What `helm template` renders for: the oldest Kubernetes release the tests keep working (the
# control plane and kind cluster they run on are hack/tools.sh's, the newest;
# CONVEYOR_K8S_VERSION=v1.34.4 runs them on 1.34; GitHub's kind workflow runs 1.34 too).
KUBE_VERSION = "1.34.4"
STARTED: list[CliProcess] = []
"""Every :class:`CliProcess` of the running test, in order (tests/conftest.py kills and reports
those still running when it ends)."""
T = TypeVar("T")


class _Deadline:
    """The part both loops share: one more try after the deadline, then a failure that says
    what was awaited and what was seen last."""

    def __init__(self, *, what: str, timeout: float, detail: Callable[[], str] | None) -> None:
        self.what = what
        self.timeout = timeout
        self.detail = detail
        self.ends = time.monotonic() + timeout

    def done(self, value: object) -> bool:
        """True when ``value`` is the awaited one; raises once the deadline has passed."""
        if value:
            return True
        if time.monotonic() >= self.ends:
            message = (
                f"timed out after {self.timeout:g}s waiting for {self.what}; last seen: {value!r}"
            )
            if self.detail is not None:
                message += "\n" + self.detail()
            raise AssertionError(message)
        return False


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    what: str,
    timeout: float = ...,
    interval: float = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = ...,
    interval: float = ...,
    detail: Callable[[], str] | None = ...,
) -> T: ...
async def eventually(
    check: Callable[[], object],
    *,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> object:
    """Call ``check`` (sync or async) until it returns a true value, and return that value.

    After ``timeout`` seconds (and one last try) fail with ``what``, which says what was
    awaited, the last value seen, and ``detail()`` if given (say, a process's output as it is
    at the failure, not as it was when the wait began). An exception from ``check`` is not
    retried: a check that may meet an expected error catches it itself.
    """
    deadline = _Deadline(what=what, timeout=timeout, detail=detail)
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if deadline.done(value):
            return value
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = 10.0,
    interval: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> T:
    """``eventually`` for code that cannot await: the same deadline and failure, a blocking
    pause between tries. Only in sync tests; inside a running event loop it would stall it."""
    deadline = _Deadline(what=what, timeout=timeout, detail=detail)
    while True:
        value = check()
        if deadline.done(value):
            return value
        time.sleep(interval)


def cli_env(redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("PROBE_HOST", "127.0.0.1")
    env.setdefault("PROBE_PORT", "0")  # several services on one machine: any free port
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def run_cli(
    *args: str, redis_url: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(redis_url, **env),
        cwd=ROOT,
    )


def probe(port: int, path: str) -> tuple[int, str] | None:
    """GET a service's ``/healthz``, ``/readyz`` or ``/metrics`` on loopback: status and body,
    or None while nothing answers on the port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class CliProcess:
    """A ``conveyor`` command running in the background, its output in a log file.

    Its probes (``/healthz``, ``/readyz``, ``/metrics``) are served on ``probe_port``: a
    free loopback port unless the test sets ``PROBE_PORT`` itself."""

    def __init__(
        self, args: tuple[str, ...], *, redis_url: str | None, env: dict[str, str]
    ) -> None:
        env = {"PROBE_PORT": str(free_port()), **env}
        self.command = " ".join(args)
        self.probe_port = int(env["PROBE_PORT"])
        fd, name = tempfile.mkstemp(prefix="conveyor-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "--log-format", "json", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(redis_url, **env),
            cwd=ROOT,
        )
        STARTED.append(self)

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def probe(self, path: str) -> tuple[int, str] | None:
        """Its ``path`` probe: status and body, or None while it does not answer."""
        return probe(self.probe_port, path)

    def metric(self, name: str) -> float:
        """A metric of its ``/metrics``, summed over its labels (0 while it does not answer)."""
        answer = self.probe("/metrics")
        if answer is None:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in answer[1].splitlines()
            if line.startswith((f"{name} ", f"{name}{{"))
        )

    def ready(self) -> bool:
        """``/readyz`` answers 200; an exit on the way fails at once, with the output."""
        if self.returncode is not None:
            raise AssertionError(
                f"conveyor {self.command} exited with {self.returncode}:\n{self.output()[-3000:]}"
            )
        answer = self.probe("/readyz")
        return answer is not None and answer[0] == 200

    async def wait_ready(self, *, timeout: float = 30) -> None:
        """Until its own ``/readyz`` says ready (for the ingestor: subscribed and Redis up)."""
        await eventually(
            lambda: asyncio.to_thread(self.ready),
            timeout=timeout,
            interval=0.05,
            what=f"conveyor {self.command} ready on /readyz (port {self.probe_port})",
            detail=lambda: self.output()[-3000:],
        )

    def kill(self) -> None:
        """kill -9: no drain, no release."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()

    def wait(self, *, timeout: float) -> int:
        """Until it exits by itself: its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """SIGTERM (what a pod gets) or another signal, and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()  # not left running into the next test
            raise
        self._log.close()
        return code


def start_cli(*args: str, redis_url: str | None = None, **env: str) -> CliProcess:
    return CliProcess(args, redis_url=redis_url, env=env)


@contextlib.asynccontextmanager
async def worker_context(
    client: QueueClient,
    redis_url: str,
    *,
    influx: InfluxSink | None = None,
    settings: SinkSettings | None = None,
) -> AsyncIterator[Context]:
    """What the built-in processors share, as ``conveyor work`` builds it: ``client``, the
    plant's state over a connection of its own to ``redis_url``, ``influx`` (None: no
    InfluxDB), ``settings`` (None: the defaults) and fresh metrics. On exit the context closes
    (its InfluxDB sink too), then the plant's connection."""
    async with PlantState.from_url(redis_url) as plant:
        ctx = Context(
            client=client,
            plant=plant,
            influx=influx,
            settings=settings or SinkSettings(),
            metrics=WorkerMetrics(),
        )
        try:
            yield ctx
        finally:
            await ctx.close()
