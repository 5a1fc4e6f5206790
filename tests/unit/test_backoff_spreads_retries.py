"""Retry waits grow to their cap, never exceed it, and differ between two clients that failed
at the same moment (so they do not meet a restarted Redis in lockstep)."""

from __future__ import annotations

import random

import pytest

from reliable_queue.backoff import Backoff


def test_waits_double_up_to_the_cap_within_the_jitter_band() -> None:
    backoff = Backoff(first=0.1, cap=1.0, jitter=0.5, rng=random.Random(1).random)
    waits = [backoff.take() for _ in range(8)]
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_peek_announces_the_wait_that_take_returns() -> None:
    backoff = Backoff(first=0.2, cap=2.0)
    for _ in range(5):
        announced = backoff.peek()
        assert backoff.take() == announced


def test_reset_starts_over() -> None:
    backoff = Backoff(first=0.1, cap=5.0, jitter=0.0)
    for _ in range(5):
        backoff.take()
    backoff.reset()
    assert backoff.take() == pytest.approx(0.1)


def test_two_clients_failing_together_do_not_retry_in_lockstep() -> None:
    a = Backoff(first=0.05, cap=5.0, rng=random.Random(1).random)
    b = Backoff(first=0.05, cap=5.0, rng=random.Random(2).random)
    times_a = times_b = 0.0
    gaps = []
    for _ in range(10):
        times_a += a.take()
        times_b += b.take()
        gaps.append(abs(times_a - times_b))
    assert max(gaps) > 0.5  # after a few rounds they are seconds apart, not together


@pytest.mark.parametrize(
    "kwargs", [{"first": 0}, {"first": 2, "cap": 1}, {"factor": 0.5}, {"jitter": 1.5}]
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        Backoff(**kwargs)
