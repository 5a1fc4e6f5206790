"""Small helpers shared by tests: polling with a deadline and running the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def eventually(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> None:
    """Wait until ``check()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


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


class CliProcess:
    """A ``conveyor`` command running in the background, its output in a log file."""

    def __init__(
        self, args: tuple[str, ...], *, redis_url: str | None, env: dict[str, str]
    ) -> None:
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

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """kill -9: no drain, no release."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """SIGTERM (what a pod gets) or another signal, and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code


def start_cli(*args: str, redis_url: str | None = None, **env: str) -> CliProcess:
    return CliProcess(args, redis_url=redis_url, env=env)
