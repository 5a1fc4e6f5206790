"""The figures of ``python -m bench soak``: what is sampled while it runs (Redis memory, queue
depth, each process's RSS and CPU, once a second) and the tables printed at the end, with the
bounds each figure is held to.
"""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from conveyor.tables import render
from reliable_queue.keys import QueueKeys

QUEUES = ("mqtt_realtime", "mqtt_spc", "mqtt_tech", "alerts")
MIB = 1024 * 1024

RSS_BOUND_BYTES = 512 * MIB
"""Every process's bound: the chart's memory limit of an ingestor and of a worker pod."""
DEAD_INGEST_MAX_BYTES = 4 * MIB
"""``INGEST_DEAD_MAX_BYTES`` in the soak: small, so that the cap is reached and shown."""
MACHINE_BUDGET_BYTES = 16 * 1024
"""Redis bytes a machine may cost, per the memory budget in docs/architecture.md (10 signals, a
20-key tech config, 2 full SPC windows); a flood machine sends far less, so this bound is loose
and the report also gives what one new machine cost."""
JOB_BUDGET_BYTES = 1024
"""Redis bytes per queued or retained job: the budget's payload x 1.25 + 256 B, for the flood's
payloads of at most ~600 B. Each queue keeps up to ``done_max_count`` (1,000) finished jobs."""
DONE_RETAINED = 1_000
"""Finished jobs a queue keeps (its policy's ``done_max_count`` by default)."""
ALERT_HISTORY_BYTES = 10_000 * 600
"""The alert history: ``ALERT_HISTORY_MAX`` entries of a few hundred bytes."""


@dataclass
class Samples:
    """What the monitor thread saw, once a second."""

    redis_used: list[int] = field(default_factory=list)
    rss: dict[str, list[int]] = field(default_factory=dict)
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """(when, CPU seconds used so far) per process."""
    depth_max: int = 0


@dataclass
class Normal:
    """Normal traffic: when each message was sent and when its live event arrived."""

    sent: dict[int, float] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    """Set when the soak is over: the live-stream listener leaves."""


# --- watching ------------------------------------------------------------------------------


def monitor(
    r: redis.Redis, pids: Callable[[], dict[str, int]], samples: Samples, stop: threading.Event
) -> None:
    """Once a second until ``stop``: Redis memory, the deepest backlog, and the RSS and CPU
    time of every process ``pids()`` names."""
    while not stop.wait(1.0):
        samples.redis_used.append(int(r.info("memory")["used_memory"]))
        pipe = r.pipeline(transaction=False)
        for q in QUEUES:
            keys = QueueKeys.for_queue(q)
            pipe.zcard(keys.pending)
            pipe.zcard(keys.delayed)
            pipe.zcard(keys.active)
        samples.depth_max = max(samples.depth_max, sum(int(n) for n in pipe.execute()))
        for name, pid in pids().items():
            samples.rss.setdefault(name, []).append(_rss(pid))
            samples.cpu.setdefault(name, []).append((time.time(), _cpu(pid)))


def _rss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _cpu(pid: int) -> float:
    """CPU seconds (user and system) the process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the report ----------------------------------------------------------------------------


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    values = sorted(values)
    return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))]


def report(
    args: argparse.Namespace,
    *,
    samples: Samples,
    normal: Normal,
    windows: tuple[float, float],
    flood_counts: dict[str, int],
    stored: int,
    metrics: dict[str, float],
    worker_dead: Counter[tuple[str, str]],
    dead_ingest: tuple[int, int],
    broker_dropped: int,
    machines_created: int,
    alive: dict[str, bool],
) -> int:
    flood_started, flood_ended = windows
    first = min(normal.sent.values())
    warm = first + 3  # connections and first writes
    latency = {
        "unloaded": [
            normal.seen[s] - t
            for s, t in normal.sent.items()
            if s in normal.seen and warm <= t < flood_started
        ],
        "loaded": [
            normal.seen[s] - t
            for s, t in normal.sent.items()
            if s in normal.seen and flood_started + 2 <= t < flood_ended
        ],
    }
    u50, u99 = _percentiles(latency["unloaded"])
    l50, l99 = _percentiles(latency["loaded"])
    ok = True

    print()
    print(
        f"Soak: {args.seconds:.0f} s, normal traffic {args.rate} msgs/s from {args.machines} "
        f"machines; flood {args.flood_rate} msgs/s for the last {flood_ended - flood_started:.0f} "
        f"s; {os.cpu_count()} cores, everything on this machine"
    )
    print()
    rows = [
        ("unloaded", f"{len(latency['unloaded']):,}", _ms(u50), _ms(u99), ""),
        ("loaded (flood)", f"{len(latency['loaded']):,}", _ms(l50), _ms(l99), ""),
        ("loaded / unloaded", "", f"{l50 / u50:.2f}x", f"{l99 / u99:.2f}x", "2x"),
    ]
    within = l50 <= 2 * u50 and l99 <= 2 * u99
    ok &= within
    print("normal traffic, publish -> live-stream event (after the InfluxDB write):")
    print(render(("phase", "messages", "p50", "p99", "bound"), rows, figures=True))

    lost = len(normal.sent) - stored
    ok &= lost == 0
    print()
    print(
        f"good messages: {len(normal.sent):,} sent, {stored:,} in InfluxDB, lost {lost:,}; "
        f"live events seen {len(normal.seen):,}"
    )

    used = samples.redis_used or [0]
    created = max(0, machines_created)
    bound = (
        used[0]
        + DEAD_INGEST_MAX_BYTES
        + ALERT_HISTORY_BYTES
        + created * MACHINE_BUDGET_BYTES
        + (samples.depth_max + len(QUEUES) * DONE_RETAINED) * JOB_BUDGET_BYTES
    )
    ok &= max(used) <= bound
    print()
    print(
        render(
            ("Redis used_memory", "start", "max", "end", "bound"),
            [("", _mib(used[0]), _mib(max(used)), _mib(used[-1]), _mib(bound))],
            figures=True,
        )
    )
    print(
        f"  bound = start + dead:ingest cap {_mib(DEAD_INGEST_MAX_BYTES)} + alert history "
        f"{_mib(ALERT_HISTORY_BYTES)} + {created:,} new machines x {MACHINE_BUDGET_BYTES:,} B "
        f"+ ({samples.depth_max:,} deepest backlog + {len(QUEUES) * DONE_RETAINED:,} retained) "
        f"jobs x {JOB_BUDGET_BYTES:,} B"
    )
    if created:
        per_machine = (used[-1] - used[0] - dead_ingest[1]) / created
        print(
            f"  beyond dead:ingest, each new flood machine cost {per_machine:,.0f} B of Redis "
            f"(budget for a full machine {MACHINE_BUDGET_BYTES:,} B)"
        )
    dead_count, dead_bytes = dead_ingest
    print(
        f"  dead:ingest holds {dead_count:,} letters, {_mib(dead_bytes)} in Redis; evicted "
        f"{metrics.get('conveyor_ingest_dead_evicted_total', 0):,.0f} to stay within the cap"
    )

    rss_rows = []
    unloaded_window = (warm, flood_started)
    loaded_window = (flood_started + 2, flood_ended)
    for name, values in samples.rss.items():
        peak = max(values or [0])
        running = alive.get(name)
        if running is not None:  # a Conveyor process, not the flood publisher
            ok &= peak <= RSS_BOUND_BYTES and running
        label = (
            f"conveyor work --queue {name}"
            if name in QUEUES
            else {"ingest": "conveyor ingest", "flood": "the flood publisher (devices)"}.get(
                name, name
            )
        )
        cpu = samples.cpu.get(name, [])
        rss_rows.append(
            (
                label,
                _mib(values[0] if values else 0),
                _mib(peak),
                _mib(values[-1] if values else 0),
                _mib(RSS_BOUND_BYTES) if running is not None else "",
                {True: "yes", False: "NO", None: ""}[running],
                _cpu_share(cpu, unloaded_window),
                _cpu_share(cpu, loaded_window),
            )
        )
    print()
    print(
        render(
            ("process", "RSS start", "max", "end", "bound", "running", "CPU unloaded", "loaded"),
            rss_rows,
            figures=True,
        )
    )

    reasons = sorted(
        (re.sub(r'.*reason="([^"]*)".*', r"\1", k), v)
        for k, v in metrics.items()
        if k.startswith("conveyor_ingest_rejected_total{")
    )
    dead_rows = [(f"dead:ingest {reason}", f"{n:,.0f}") for reason, n in reasons]
    dead_rows += [
        (f"dead:{q} {reason}", f"{n:,}") for (q, reason), n in sorted(worker_dead.items())
    ]
    dead_rows.append(
        (
            "random topics: no subscription matches, the broker delivers none",
            f"{flood_counts.get('random_topic', 0):,}",
        )
    )
    dead_rows.append(
        (
            "unrouted (subscribed, no route: acknowledged, dropped)",
            f"{metrics.get('conveyor_ingest_unrouted_total', 0):,.0f}",
        )
    )
    dead_rows.append(("kept back by the broker (over Maximum Packet Size)", f"{broker_dropped:,}"))
    dead_rows.append(
        (
            "QoS 0 dropped at the inbox bound",
            f"{metrics.get('conveyor_ingest_inbox_dropped_total', 0):,.0f}",
        )
    )
    print()
    print(render(("flood outcome", "messages"), dead_rows, figures=True))
    print()
    print(
        "flood sent: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(flood_counts.items(), key=lambda kv: -kv[1]))
    )
    print()
    print("every claim held" if ok else "A CLAIM DID NOT HOLD: see above")
    return 0 if ok else 1


def _cpu_share(cpu: list[tuple[float, float]], window: tuple[float, float]) -> str:
    """Share of one core the process used within ``window``, from its CPU samples."""
    inside = [(t, c) for t, c in cpu if window[0] <= t <= window[1]]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return "-"
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return f"{(c1 - c0) / (t1 - t0) * 100:.0f} %"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"
