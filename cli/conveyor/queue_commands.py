"""``conveyor queues | workers | enqueue | dlq | policy``: inspect and steer queues from a
shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from conveyor.settings import RedisSettings, load
from conveyor.tables import render
from reliable_queue import QueueClient, QueuePolicy, UsageError


@asynccontextmanager
async def open_client() -> AsyncIterator[QueueClient]:
    settings = load(RedisSettings)
    async with QueueClient.from_url(settings.effective_url(), cluster=settings.cluster) as client:
        yield client


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("queues", help="show every queue's depth and counters")
    p.add_argument("--json", action="store_true", help="print the stats document as JSON")
    p.set_defaults(run=cmd_queues)

    p = sub.add_parser(
        "workers",
        help="show a queue's live workers and the jobs each holds (as of its last heartbeat)",
        description="A worker is <host name>:<pid>; in a pod the host name is the pod's name. "
        "Before a scale-in the operator sets each worker pod's pod-deletion-cost to these "
        "counts, so idle pods go first.",
    )
    p.add_argument("queue")
    p.add_argument("--json", action="store_true", help="print {worker: jobs held} as JSON")
    p.set_defaults(run=cmd_workers)

    p = sub.add_parser("enqueue", help="queue one job and print its id")
    p.add_argument("queue")
    p.add_argument("data", help="the job's data as JSON, e.g. '{\"temp\": 21.5}'")
    p.add_argument(
        "--priority",
        type=int,
        help="-1000..1000, higher first (default: the queue's default_priority, 0 unless set)",
    )
    p.add_argument("--delay", type=float, default=0, help="seconds before it may run")
    p.add_argument("--job-id", help="a stable id: a live job with the same id is not queued twice")
    p.set_defaults(run=cmd_enqueue)

    dlq = sub.add_parser("dlq", help="inspect, replay and purge dead letters (dead:<queue>)")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = dsub.add_parser("list", help="list dead letters, newest first")
    p.add_argument("queue", help="queue name, or dead:<queue>")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(run=cmd_dlq_list)
    p = dsub.add_parser("replay", help="move dead letters back to the queue with fresh attempts")
    p.add_argument("queue")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    p.add_argument("--all", action="store_true", help="replay every dead letter of the queue")
    p.set_defaults(run=cmd_dlq_replay)
    p = dsub.add_parser("purge", help="delete dead letters (all, or the ids given)")
    p.add_argument("queue")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    p.set_defaults(run=cmd_dlq_purge)

    p = sub.add_parser(
        "policy",
        help="show or change a queue's live policy",
        description="Prints the queue's policy as JSON, after applying the changes given. Workers "
        "apply a change within a second, without a restart. A queue managed by a MessageQueue "
        "gets its spec's policy back at the operator's next poll.",
    )
    p.add_argument("queue")
    for name, field in QueuePolicy.model_fields.items():
        kind = int if field.annotation in (int, int | None) else float
        p.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            help=_HELP.get(name, field.description),
        )
    p.set_defaults(run=cmd_policy)


_HELP = {
    "timeout_s": "seconds one attempt (one batch, for the built-in processors) may run before it "
    "is cancelled and fails with reason timeout, retried per the policy; 0 clears it, and the "
    "worker's default applies: none for --handler, for the built-in processors see "
    "`conveyor work --help`",
}


async def cmd_queues(args: argparse.Namespace) -> int:
    async with open_client() as client:
        stats = await client.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    columns = ("pending", "processing", "delayed", "failed", "completed", "oldest_pending_age_s")
    headers = (
        "QUEUE",
        "PENDING",
        "PROCESSING",
        "DELAYED",
        "DEAD",
        "COMPLETED",
        "OLDEST",
        "WORKERS",
    )
    rows = [
        (
            name,
            *(_num(q[c]) for c in columns[:-1]),
            f"{q['oldest_pending_age_s']:.1f}s",
            str(q["workers"]),
        )
        for name, q in stats["queues"].items()
    ]
    print(render(headers, rows) if rows else "no queues yet: enqueue a job or start a worker")
    return 0


async def cmd_workers(args: argparse.Namespace) -> int:
    async with open_client() as client:
        held = await client.jobs_held(args.queue)
    if args.json:
        print(json.dumps(held, indent=2, sort_keys=True))
        return 0
    rows = [(worker, str(jobs)) for worker, jobs in sorted(held.items())]
    print(render(("WORKER", "JOBS HELD"), rows) if rows else f"no live worker on {args.queue}")
    return 0


async def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise UsageError(f"DATA is not valid JSON ({exc}); quote it, e.g. '{{\"a\": 1}}'") from exc
    async with open_client() as client:
        job_id = await client.enqueue(
            args.queue, data, priority=args.priority, delay=args.delay, job_id=args.job_id
        )
    print(job_id)
    return 0


async def cmd_dlq_list(args: argparse.Namespace) -> int:
    async with open_client() as client:
        letters = await client.dead_letters(args.queue, offset=args.offset, limit=args.limit)
        total = await client.dead_letter_count(args.queue)
    if args.json:
        print(json.dumps({"total": total, "items": [d.to_dict() for d in letters]}, indent=2))
        return 0
    if not letters:
        print(f"no dead letters in dead:{args.queue.removeprefix('dead:')}")
        return 0
    rows = [
        (
            d.id,
            _time(d.failed_at),
            d.reason,
            str(d.attempts),
            d.error.splitlines()[0][:60] if d.error else "",
        )
        for d in letters
    ]
    print(render(("JOB_ID", "FAILED_AT", "REASON", "ATTEMPTS", "ERROR"), rows))
    if total > len(letters):
        print(f"... {total} in all; use --offset/--limit or --json")
    return 0


async def cmd_dlq_replay(args: argparse.Namespace) -> int:
    if args.all == bool(args.job_ids):
        raise UsageError("give JOB_IDs to replay, or --all (not both)")
    async with open_client() as client:
        n = await client.replay_dead_letters(args.queue, None if args.all else args.job_ids)
    print(f"replayed {n} dead letter(s)")
    return 0


async def cmd_dlq_purge(args: argparse.Namespace) -> int:
    async with open_client() as client:
        n = await client.purge_dead_letters(args.queue, args.job_ids or None)
    print(f"purged {n} dead letter(s)")
    return 0


async def cmd_policy(args: argparse.Namespace) -> int:
    changes = {
        k: getattr(args, k) for k in QueuePolicy.model_fields if getattr(args, k) is not None
    }
    if changes.get("timeout_s") == 0:
        changes["timeout_s"] = None  # 0 clears the queue's timeout
    async with open_client() as client:
        policy = (
            await client.set_policy(args.queue, **changes)
            if changes
            else await client.get_policy(args.queue)
        )
    json.dump(policy.model_dump(), sys.stdout, indent=2)
    print()
    return 0


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
