"""``conveyor bench ...``: gone from the product; says where the benchmarks are now.

The benchmarks (their peers' drivers and installers, Telegraf, a local control plane) are
tooling: they live in the repository's ``bench/`` and run from a checkout (issue 17). The
subcommand stays, hidden, so that an old script fails with the new command instead of
``invalid choice``.
"""

from __future__ import annotations

import argparse
import shlex

from reliable_queue import UsageError

MOVED = (
    "the benchmarks are not part of the installed conveyor command any more: from a checkout "
    "of the repository, run hack/bench.sh {what} (or python -m bench {what} from its root, "
    "with the project's virtualenv); see docs/benchmarks.md"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # No option of its own (not even --help): whatever follows ``bench`` is quoted back.
    p = sub.add_parser("bench", add_help=False, prefix_chars="\0")
    p.add_argument("rest", nargs="*")

    async def run(args: argparse.Namespace) -> int:
        raise UsageError(MOVED.format(what=shlex.join(args.rest) or "WHAT"))

    p.set_defaults(run=run)
