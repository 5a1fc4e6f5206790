"""Compiles the Sparkplug B schema (services/ingestor/conveyor_ingestor/sparkplug/sparkplug_b.proto)
into sparkplug_b_pb2.py and sparkplug_b_pb2.pyi beside it, with protoc from grpcio-tools (a dev
dependency; the product needs only the protobuf runtime). `python hack/sparkplug_proto.py
--check` fails if the generated files are stale (CI runs it through
tests/unit/test_sparkplug_schema.py)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "services" / "ingestor"
PROTO = Path("conveyor_ingestor/sparkplug/sparkplug_b.proto")
GENERATED = ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi")


def compile_to(out: Path) -> dict[str, str]:
    """The generated files' texts, by name, compiled into ``out``."""
    from grpc_tools import protoc

    code = protoc.main(
        ["protoc", f"-I{SOURCES}", f"--python_out={out}", f"--pyi_out={out}", str(PROTO)]
    )
    if code != 0:
        raise SystemExit(f"protoc failed on {SOURCES / PROTO} (exit {code})")
    return {name: (out / PROTO.parent / name).read_text() for name in GENERATED}


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_to(Path(tmp))
    target = SOURCES / PROTO.parent
    stale = [
        n
        for n, text in fresh.items()
        if not (target / n).is_file() or (target / n).read_text() != text
    ]
    if "--check" in argv:
        if stale:
            print(f"stale: {', '.join(stale)}; run: python hack/sparkplug_proto.py")
            return 1
        return 0
    for name, text in fresh.items():
        (target / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
