"""The benchmarks are tooling beside the product, not in it (issue 17).

- The wheel, built from this checkout as the image's Dockerfile builds it (``pip wheel
  --no-deps .``), holds the product's packages and nothing of ``bench/``: no harness, no peer
  driver (``*_driver.py``, ``bullmq_driver.mjs``), no installer (``peers_env.py``). The image
  holds only the virtualenv that wheel is installed into, so this covers the image too.
- ``conveyor bench ...`` fails with exit code 2 and the command that runs the same benchmark
  now, never a traceback or argparse's ``invalid choice``.
- ``python -m bench`` takes every subcommand and flag ``conveyor bench`` took: scripts call
  them by those names.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bench.__main__ import build_parser
from tests.helpers import ROOT, run_cli

PRODUCT = {
    "reliable_queue",
    "conveyor_messages",
    "conveyor_plant",
    "conveyor_ingestor",
    "conveyor_worker",
    "conveyor_gateway",
    "conveyor_operator",
    "conveyor",
}
# What a build can see of the checkout; caches and build output are not sources.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".*_cache",
    ".hypothesis",
    ".schemathesis",
    "test-artifacts",
    "bench-results",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "node_modules",
)


def _wheel_names(tmp_path: Path) -> list[str]:
    # A copy, so that the in-tree build leaves nothing in the working tree.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES, symlinks=True)
    out = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"]
    build = subprocess.run(
        [*pip, "--no-build-isolation", "--wheel-dir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = out.glob("conveyor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_the_wheel_holds_the_product_and_no_benchmark(tmp_path: Path) -> None:
    names = _wheel_names(tmp_path)
    assert "conveyor/cli.py" in names  # the build is the product's, not an empty wheel
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top <= PRODUCT, f"the wheel ships more than the product: {sorted(top - PRODUCT)}"
    tooling = [
        name
        for name in names
        if "bench" in name.split("/")[:-1]
        or "peers" in name.split("/")[:-1]
        or name.endswith((".mjs", "_driver.py", "peers_env.py"))
    ]
    assert not tooling, f"the wheel ships benchmark tooling: {tooling}"


def test_conveyor_bench_says_where_the_benchmarks_are() -> None:
    out = run_cli("--log-level", "WARNING", "bench", "pipeline", "--messages", "200000")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "hack/bench.sh pipeline --messages 200000" in out.stderr
    assert "python -m bench pipeline --messages 200000" in out.stderr
    assert "docs/benchmarks.md" in out.stderr
    assert run_cli("bench", "--help").returncode == 2  # not argparse's help, the same message
    assert "bench" not in run_cli("--help").stdout  # hidden: not a command of the product


SCRIPTED = [
    "queue --messages 5 --peers '' --redis-url redis://127.0.0.1:1",
    "ingest --messages 5",
    "pipeline --messages 5 --rounds 1 --telegraf",
    "worker --messages 5 --batch-size 2 --concurrency 1 --profile out.prof",
    "gateway --clients 1,2 --messages 5 --rate 1 --seconds 1",
    "autoscale --jobs 5 --rounds 1 --intervals 1 --latency-jobs 5 --latency-target 1"
    " --scale-in-rounds 1",
    "soak --seconds 1 --machines 1 --rate 1 --flood-rate 1 --max-payload-bytes 1 --seed 1"
    " --flood-groups valid",
]


@pytest.mark.parametrize("command", SCRIPTED, ids=[c.split()[0] for c in SCRIPTED])
def test_python_m_bench_takes_the_flags_conveyor_bench_took(command: str) -> None:
    argv = shlex.split(command)
    args = build_parser().parse_args(["--log-level", "WARNING", *argv])
    assert args.bench_command == argv[0]
    assert callable(args.run)
