"""Benchmarks: figures printed as tables beside the physical limit and peers, never asserted."""
