"""`conveyor simulate --history`: the past it publishes is bounded and refused where it cannot
be what it says, with the reason, before any broker is asked."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--history", "604801"], "--history is 0 to 604800 seconds (a week)"),
        (["--history", "-1"], "--history is 0 to 604800 seconds"),
        (["--history", "60", "--history-step", "0.01"], "--history-step 0.1 to 604800"),
        (["--history", "60", "--history-step", "nan"], "--history-step 0.1 to 604800"),
        (["--history", "inf"], "--history is 0 to 604800 seconds"),
        (["--sparkplug", "--history", "60"], "with --sparkplug: no --burst or --history"),
    ],
)
def test_a_history_it_cannot_publish_is_refused_with_the_reason(args: list[str], said: str) -> None:
    out = run_cli("simulate", *args, MQTT_BROKER_URL="mqtt://127.0.0.1:1")
    assert out.returncode != 0
    assert said in out.stderr, out.stderr
    assert "cannot reach the MQTT broker" not in out.stderr  # refused before connecting
