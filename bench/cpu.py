"""CPU seconds of processes, from ``/proc/<pid>/stat``, for per-message cost figures.

A process's figure is its user + system time plus that of its children: the ones it has
waited for (``cutime``/``cstime``) and the ones still running, so a service that forks helpers
is counted whole. Linux only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

Groups = Mapping[str, Sequence[int]]
"""Named groups of process ids, e.g. ``{"workers": [101, 102], "redis-server": [90]}``."""


def _stat(pid: int) -> list[str] | None:
    """The fields after the command name (field 3, the state, first); None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw.rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds used so far by these processes and all their descendants (gone ones: 0)."""
    tree = _children()
    seen: set[int] = set()
    todo = list(pids)
    ticks = 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        fields = _stat(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 here.
        ticks += sum(int(f) for f in fields[11:15])
        todo += tree.get(pid, [])
    return ticks / TICKS


def snapshot(groups: Groups) -> dict[str, float]:
    return {name: cpu_seconds(pids) for name, pids in groups.items()}


def used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per group between two snapshots (a group absent before started at 0)."""
    return {name: after[name] - before.get(name, 0.0) for name in after}


def wait_idle(
    pids: Sequence[int], *, below: float = 0.05, window: float = 0.5, timeout: float = 60.0
) -> None:
    """Wait until these processes used less than ``below`` CPU seconds over ``window`` seconds
    (started up and waiting for work). Raises TimeoutError if they stay busy past ``timeout``."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pids)
        if now - last < below:
            return
        last = now
    raise TimeoutError(
        f"processes {list(pids)} were still busy after {timeout:.0f} s: they did not finish "
        "starting up; look at their logs, or run the benchmark on a quieter machine"
    )
