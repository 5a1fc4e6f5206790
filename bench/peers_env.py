"""Installs the peers the queue benchmark compares against, each in its own environment
under the user's cache directory (their Redis client pins conflict with each other).

Idempotent: a warm run only checks a stamp per peer. Progress goes to stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PYTHON_PEERS = {
    "rq": ["rq>=2,<4", "hiredis"],
    "arq": ["arq>=0.26,<1", "hiredis"],
    "dramatiq": ["dramatiq[redis]>=1.17,<3", "hiredis"],
    "celery": ["celery[redis]>=5.4,<6"],
}
NODE_PEERS = {"bullmq": ["bullmq@5"]}
DRIVERS = Path(__file__).with_name("peers")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "conveyor" / "bench-peers"


@dataclass(frozen=True)
class Peer:
    name: str
    command: list[str]
    version: str


def ensure_peer(name: str) -> Peer:
    """Install ``name`` if needed; return how to run its driver."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if name in PYTHON_PEERS:
        venv = root / f"py-{name}"
        stamp = venv / ".installed"
        want = " ".join(PYTHON_PEERS[name])
        if not stamp.exists() or stamp.read_text() != want:
            _progress(f"installing {name} for the benchmark into {venv}")
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            _run([str(venv / "bin" / "pip"), "install", "-q", *PYTHON_PEERS[name]])
            stamp.write_text(want)
        python = str(venv / "bin" / "python")
        version = subprocess.run(
            [python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return Peer(name, [python, str(DRIVERS / f"{name}_driver.py")], version)
    if name in NODE_PEERS:
        node = shutil.which("node")
        npm = shutil.which("npm")
        if node is None or npm is None:
            raise RuntimeError(f"{name} needs Node.js and npm: apt-get install nodejs npm")
        folder = root / "node"
        folder.mkdir(exist_ok=True)
        module = folder / "node_modules" / name
        if not module.exists():
            _progress(f"installing {name} for the benchmark into {folder}")
            if not (folder / "package.json").exists():
                (folder / "package.json").write_text('{"private": true, "type": "module"}\n')
            _run(
                [npm, "install", "--silent", "--no-audit", "--no-fund", *NODE_PEERS[name]],
                cwd=folder,
            )
        script = folder / f"{name}_driver.mjs"
        shutil.copyfile(DRIVERS / f"{name}_driver.mjs", script)  # resolves node_modules there
        version = _json_field(module / "package.json", "version")
        return Peer(name, [node, str(script)], version)
    raise ValueError(
        f"unknown peer {name!r}: choose from {', '.join([*PYTHON_PEERS, *NODE_PEERS])}"
    )


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")


def _json_field(path: Path, field: str) -> str:
    import json

    return str(json.loads(path.read_text())[field])


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
