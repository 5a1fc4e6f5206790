"""Privileged containers, which kind's nodes are, on this host: runc-hostcaps
(tests/infra/kind/runc-hostcaps) drops the capabilities the host's bounding set lacks, and only
those, before runc runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conveyor"
BASE_IMAGE = "conveyor.local/debian:bookworm"
# linux/capability.h, in order of their bit numbers
CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)


def bounding_set(status: str) -> int:
    line = next(x for x in status.splitlines() if x.startswith("CapBnd:"))
    return int(line.split()[1], 16)


def missing_here() -> set[str]:
    bounding = bounding_set(Path("/proc/self/status").read_text())
    return {f"CAP_{name}" for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1}


@pytest.fixture(scope="module")
def wrapper() -> Path:
    subprocess.run(["bash", str(ROOT / "hack/tools.sh"), "runc-hostcaps"], check=True)
    return CACHE / "kind-node/bin/runc-hostcaps"


@pytest.fixture
def fake_runc(tmp_path: Path) -> Path:
    """Stands in for runc: records its arguments and the files it was handed."""
    script = tmp_path / "runc"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >{tmp_path}/args\n'
        f'[ -f "$BUNDLE/config.json" ] && cp "$BUNDLE/config.json" {tmp_path}/seen.json\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def run_wrapper(wrapper: Path, runc: Path, bundle: Path, *args: str) -> None:
    env = {**os.environ, "RUNC_HOSTCAPS_RUNC": str(runc), "BUNDLE": str(bundle)}
    subprocess.run([str(wrapper), *args], check=True, env=env, timeout=30)


def test_create_drops_exactly_what_the_host_lacks(
    wrapper: Path, fake_runc: Path, tmp_path: Path
) -> None:
    every = [f"CAP_{name}" for name in CAPABILITIES]
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "args": ["/sbin/init"],
            "capabilities": {k: every for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 18446744073709551615, "soft": 1048576}],
        },
        "linux": {"resources": {"memory": {"limit": 9223372036854771712}}},
    }
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    args = ("--root", "/run/x", "--log", "l.json", "--systemd-cgroup", "create")
    run_wrapper(wrapper, fake_runc, bundle, *args, "--bundle", str(bundle), "c1")

    assert (tmp_path / "args").read_text().split() == [*args, "--bundle", str(bundle), "c1"]
    seen = json.loads((tmp_path / "seen.json").read_text())
    kept = [c for c in every if c not in missing_here()]
    for name in ("bounding", "effective", "permitted"):
        assert seen["process"]["capabilities"][name] == kept
    # Everything else as it was, large numbers included.
    assert seen["process"]["rlimits"] == config["process"]["rlimits"]
    assert seen["linux"] == config["linux"]


def test_exec_edits_the_process_file_and_other_commands_pass_through(
    wrapper: Path, fake_runc: Path, tmp_path: Path
) -> None:
    process = tmp_path / "process.json"
    process.write_text(
        json.dumps({"args": ["sh"], "capabilities": {"effective": sorted(missing_here())}})
    )
    run_wrapper(wrapper, fake_runc, tmp_path, "exec", "--process", str(process), "c1")
    assert json.loads(process.read_text())["capabilities"]["effective"] == []
    before = process.read_text()
    run_wrapper(wrapper, fake_runc, tmp_path, "state", "c1")
    assert (tmp_path / "args").read_text().split() == ["state", "c1"]
    assert process.read_text() == before


@pytest.mark.integration
@pytest.mark.docker
def test_a_privileged_container_starts_and_takes_docker_exec() -> None:
    if subprocess.run(["bash", str(ROOT / "hack/images.sh"), "base"]).returncode != 0:
        pytest.fail("hack/images.sh base failed: no Docker engine or no base image")
    started = subprocess.run(
        ["docker", "run", "-d", "--privileged", BASE_IMAGE, "sleep", "60"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stderr  # "unable to apply caps" without the wrapper
    container = started.stdout.strip()
    try:
        status = subprocess.run(
            ["docker", "exec", "--privileged", container, "cat", "/proc/self/status"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        effective = next(x for x in status.splitlines() if x.startswith("CapEff:")).split()[1]
        # Privileged: every capability the container may hold is in effect.
        assert int(effective, 16) == bounding_set(status)
        runtime = subprocess.run(
            ["docker", "info", "--format", "{{.DefaultRuntime}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if missing_here():
            assert runtime == "runc-hostcaps"
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
