"""The compiled Sparkplug B schema (sparkplug_b_pb2.py and .pyi) is what protoc makes of
sparkplug_b.proto today: edit the .proto, then run `python hack/sparkplug_proto.py`."""

from __future__ import annotations

import importlib.util

from tests.helpers import ROOT


def test_the_compiled_schema_is_current() -> None:
    script = ROOT / "hack" / "sparkplug_proto.py"
    spec = importlib.util.spec_from_file_location("sparkplug_proto", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "stale: run python hack/sparkplug_proto.py"
