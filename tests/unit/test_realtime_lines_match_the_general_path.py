"""``realtime_lines`` writes the common point directly, not through ``line()``: whatever the
names, values and times, it gives the same lines as ``line()`` would, or fails the same way."""

from __future__ import annotations

from typing import Any

from conveyor_worker.points import MAX_TIME_MS, line, point_time, realtime_lines
from hypothesis import given, settings
from hypothesis import strategies as st


def through_line(message: dict[str, Any]) -> list[str]:
    """The points as every point was made before the direct path: each through ``line()``."""
    out = []
    for sample in message["samples"]:
        ts = point_time(message, sample)
        for signal, value in sample["values"].items():
            if isinstance(value, bool):
                fields: dict[str, Any] = {"flag": value}
            elif isinstance(value, int | float):
                fields = {"value": float(value)}
            else:
                fields = {"text": value}
            out.append(
                line("realtime", {"machine": message["machine"], "signal": signal}, fields, ts)
            )
    return out


def outcome(make: Any, message: dict[str, Any]) -> object:
    try:
        return make(message)
    except (ValueError, TypeError, OverflowError) as exc:
        return type(exc)


names = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=' ,=\\\n"#a', max_size=6),
    st.text(min_size=250, max_size=300),
    st.sampled_from(["", "m", "a b", "x\\"]),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, -(2**53), 2**1100, True, False, None]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)
times = st.one_of(
    st.integers(min_value=1_700_000_000_000, max_value=1_800_000_000_000),
    st.sampled_from([MAX_TIME_MS, MAX_TIME_MS + 1, -(MAX_TIME_MS + 1)]),
)


@settings(max_examples=300, deadline=None)
@given(
    machine=st.one_of(names, st.integers()),
    samples=st.lists(
        st.fixed_dictionaries({"ts": times, "values": st.dictionaries(names, values, max_size=4)}),
        max_size=3,
    ),
)
def test_the_same_lines_or_the_same_failure(machine: Any, samples: list[dict[str, Any]]) -> None:
    message = {"machine": machine, "received_at": 1_750_000_000_000, "samples": samples}
    assert outcome(realtime_lines, message) == outcome(through_line, message)
