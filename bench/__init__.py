"""Benchmarks: figures printed as tables beside the physical limit and peers, never asserted.

Tooling, not the product: this package lives beside the sources, outside the wheel and the
image, and runs from a checkout (``hack/bench.sh WHAT`` or ``python -m bench WHAT``). It
imports the product; no product package imports it (an import-linter contract says so).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT"]

# The checkout, where the CRD and hack/tools.sh are: bench runs from there, never installed.
ROOT = Path(__file__).resolve().parents[1]
