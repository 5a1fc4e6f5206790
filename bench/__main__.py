"""``python -m bench WHAT``: measurements printed as tables, never asserted in tests.

Run from the checkout's root with the project's virtualenv active: the harnesses start their
helpers as ``python -m bench.<module>``, which find the package the same way. ``hack/bench.sh
WHAT`` sources hack/bootstrap.sh and puts the checkout on PYTHONPATH, from any directory. The
subcommands and flags are those ``conveyor bench`` had before the benchmarks left the product
(issue 17): scripts call them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from conveyor.cli import add_logging_options

Harness = Callable[[argparse.Namespace], int]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure throughput, latency and memory on this machine (docs/benchmarks.md).",
    )
    add_logging_options(parser)
    bsub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    q = bsub.add_parser("queue", help="the reliable queue against redis-benchmark and peers")
    q.add_argument("--messages", type=int, default=50_000, help="jobs per throughput run")
    q.add_argument("--peers", default="rq,arq,dramatiq,celery,bullmq", help="peers to run, or ''")
    q.add_argument("--redis-url", help="use this Redis instead of starting one (it gets FLUSHALL)")

    def run_queue(args: argparse.Namespace) -> int:
        from bench.queue import run

        return asyncio.run(run(args))

    q.set_defaults(run=run_queue)

    i = bsub.add_parser("ingest", help="MQTT -> Redis at QoS 1 against the broker's own limit")
    i.add_argument("--messages", type=int, default=50_000, help="messages per contender")

    def run_ingest(args: argparse.Namespace) -> int:
        from bench.ingest import run

        return run(args)

    i.set_defaults(run=run_ingest)

    pl = bsub.add_parser(
        "pipeline",
        help="MQTT -> InfluxDB end to end at 1, 2 and 4 workers, CPU per message, Telegraf",
    )
    pl.add_argument("--messages", type=int, default=50_000, help="messages per run")
    pl.add_argument(
        "--rounds",
        type=_positive,
        default=2,
        help="one-worker runs alternating with Telegraf's; the best of each is compared",
    )
    pl.add_argument(
        "--telegraf",
        action="store_true",
        help="build Telegraf first if it is not built (bash hack/tools.sh telegraf; minutes)",
    )

    def run_pipeline(args: argparse.Namespace) -> int:
        from bench.pipeline import run

        return run(args)

    pl.set_defaults(run=run_pipeline)

    w = bsub.add_parser("worker", help="CPU per realtime job of the worker, Redis and InfluxDB")
    w.add_argument("--messages", type=int, default=20_000, help="jobs per run")
    w.add_argument("--batch-size", type=int, default=200, help="WORKER_BATCH_SIZE")
    w.add_argument("--concurrency", type=int, default=3, help="batches at once")
    w.add_argument("--profile", metavar="FILE", help="cProfile the worker run into FILE")

    def run_worker(args: argparse.Namespace) -> int:
        from bench.worker import run

        return run(args)

    w.set_defaults(run=run_worker)

    g = bsub.add_parser("gateway", help="the live stream fanned out to many WebSocket clients")
    g.add_argument("--clients", default="100,1000", help="client counts, comma-separated")
    g.add_argument("--messages", type=int, default=1_000, help="messages per throughput run")
    g.add_argument("--rate", type=int, default=20, help="messages/s in the latency run")
    g.add_argument("--seconds", type=float, default=5, help="length of the latency run")

    def run_gateway(args: argparse.Namespace) -> int:
        from bench.gateway import run

        return run(args)

    g.set_defaults(run=run_gateway)

    a = bsub.add_parser("autoscale", help="backlog -> replicas on a local control plane vs KEDA")
    a.add_argument("--jobs", type=int, default=20_000, help="backlog per round")
    a.add_argument("--rounds", type=int, default=3, help="rounds per polling interval")
    a.add_argument("--intervals", default="1,5", help="polling intervals to try, in seconds")
    a.add_argument(
        "--latency-jobs", type=int, default=1200, help="burst of 50 ms jobs, latency scenario"
    )
    a.add_argument("--latency-target", type=float, default=10.0, help="its targetLatencySeconds")
    a.add_argument("--scale-in-rounds", type=int, default=3, help="rounds of the scale-in")

    def run_autoscale(args: argparse.Namespace) -> int:
        from bench.autoscale import run

        return run(args)

    a.set_defaults(run=run_autoscale)

    s = bsub.add_parser(
        "soak", help="normal traffic beside a misbehaving device flood: latency, memory, losses"
    )
    s.add_argument(
        "--seconds",
        type=float,
        default=180,
        help="whole soak; the first quarter (10-60 s) without the flood",
    )
    s.add_argument("--machines", type=int, default=20, help="machines of the normal traffic")
    s.add_argument("--rate", type=float, default=100, help="normal realtime messages/s in all")
    s.add_argument("--flood-rate", type=float, default=300, help="flood messages/s")
    s.add_argument(
        "--max-payload-bytes", type=int, default=256 * 1024, help="INGEST_MAX_PAYLOAD_BYTES"
    )
    s.add_argument("--seed", type=int, default=15, help="seed of the flood's random choices")
    s.add_argument(
        "--flood-groups",
        default="random_topic,valid,malformed",
        help="what the flood sends: random topics, valid messages of new machines, malformed "
        "and oversized payloads (comma-separated; to see what each costs)",
    )

    def run_soak(args: argparse.Namespace) -> int:
        from bench.soak import run

        return run(args)

    s.set_defaults(run=run_soak)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from conveyor import cli, logs
    from conveyor.settings import SettingsError

    logs.configure(level=args.log_level, fmt=args.log_format)
    harness: Harness = args.run
    try:
        return harness(args)
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:
        return cli.fail(str(exc), cli.EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - mapped to one line as `conveyor` does
        return cli.handle_error(exc)


if __name__ == "__main__":
    sys.exit(main())
