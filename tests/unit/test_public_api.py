"""Each package's public surface: ``__all__`` sorted and exactly what is re-exported."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "package",
    [
        "reliable_queue",
        "conveyor_messages",
        "conveyor_ingestor",
        "conveyor_worker",
        "conveyor_operator",
    ],
)
def test_all_is_sorted_and_complete(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    public = {n for n in vars(module) if not n.startswith("_") and n not in {"annotations"}}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert set(exported) == public - submodules
