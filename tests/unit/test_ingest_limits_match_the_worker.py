"""The ingestor refuses what the worker could not write, and the two services (which may not
import each other) state InfluxDB's limits alike: a message the ingestor queues never fails in
the worker for a limit the ingestor should have checked."""

from __future__ import annotations

from conveyor_ingestor import limits
from conveyor_worker import points


def test_the_time_range_is_the_same_on_both_sides() -> None:
    assert (limits.MIN_TIME_MS, limits.MAX_TIME_MS) == (points.MIN_TIME_MS, points.MAX_TIME_MS)


def test_a_tech_config_the_ingestor_takes_fits_a_string_field() -> None:
    assert limits.MAX_CONFIG_BYTES <= points.MAX_STRING_FIELD_BYTES


def test_names_and_text_the_ingestor_takes_fit_a_series_key() -> None:
    # measurement, machine and signal tags, the longest field key ("value"), with escaping
    # that at most doubles a name
    assert 2 * (3 * limits.MAX_NAME_BYTES) + 64 < points.MAX_KEY_BYTES
    assert limits.MAX_STRING_BYTES <= points.MAX_STRING_FIELD_BYTES
