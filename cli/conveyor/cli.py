"""The ``conveyor`` command: one console script, a subcommand per service and inspection.

Errors a user can fix (bad settings, unreachable Redis, a wrong argument) end in one line
on stderr that says what to fix, and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from conveyor.settings import SettingsError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``, as every entry point takes them."""
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--log-format",
        default=os.environ.get("CONVEYOR_LOG_FORMAT", "auto"),
        choices=("auto", "json", "text"),
        help="default: $CONVEYOR_LOG_FORMAT or auto (text on a terminal, else JSON)",
    )


def build_parser() -> argparse.ArgumentParser:
    from conveyor import (
        bench_command,
        crd_command,
        dev_command,
        gateway_command,
        ingest_command,
        operator_command,
        queue_commands,
        simulate_command,
        uninstall_command,
        work_command,
    )

    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Reliable factory telemetry: MQTT -> Redis queues -> workers.",
        epilog="Redis is configured by REDIS_URL, or REDIS_HOST, REDIS_PORT, REDIS_PASSWORD.",
    )
    add_logging_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    queue_commands.register(sub)
    ingest_command.register(sub)
    work_command.register(sub)
    operator_command.register(sub)
    gateway_command.register(sub)
    simulate_command.register(sub)
    dev_command.register(sub)
    bench_command.register(sub)
    uninstall_command.register(sub)
    crd_command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from conveyor import logs

    logs.configure(level=args.log_level, fmt=args.log_format)
    command: Command = args.run
    try:
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - mapped to one line below
        return handle_error(exc)


def handle_error(exc: Exception) -> int:
    from reliable_queue import QueueUnavailable, UsageError

    if isinstance(exc, QueueUnavailable):
        return fail(f"{exc}\n  check that Redis runs and REDIS_URL points at it", EXIT_UNAVAILABLE)
    if isinstance(exc, UsageError):
        return fail(str(exc), EXIT_USAGE)
    raise exc


def fail(message: str, code: int) -> int:
    print(f"conveyor: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
