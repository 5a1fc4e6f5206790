"""Every INGEST_SPARKPLUG_* setting reaches what it says it sets (the routing table, the
sessions' options, what a replica keeps of the others' edge nodes, the host's STATE), and
absurd ones are refused at start, naming the variable."""

from __future__ import annotations

import os

import pytest

from conveyor.ingest_command import routing_table, sparkplug_options
from conveyor.settings import IngestSettings, SettingsError, load

SET = {
    "INGEST_SPARKPLUG": "true",
    "INGEST_SPARKPLUG_GROUPS": "plant1, plant2",
    "INGEST_SPARKPLUG_QUEUE": "sparkplug_rt",
    "INGEST_SPARKPLUG_ALERTS_QUEUE": "sparkplug_alerts",
    "INGEST_SPARKPLUG_REBIRTH_INTERVAL_S": "7",
    "INGEST_SPARKPLUG_MAX_PARKED": "11",
    "INGEST_SPARKPLUG_MAX_PARKED_BYTES": "131072",
    "INGEST_SPARKPLUG_MAX_PARKED_BYTES_TOTAL": "2097152",
    "INGEST_SPARKPLUG_NODE_MACHINE": "{node}",
    "INGEST_SPARKPLUG_DEVICE_MACHINE": "{node}.{device}",
    "INGEST_SPARKPLUG_STANDBY_BYTES": "3145728",
    "INGEST_REPLICA_INDEX": "2",
    "INGEST_SPARKPLUG_HOST_ID": "conveyor-a",
}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> IngestSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load(IngestSettings)


def test_each_setting_reaches_what_it_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    ingest = settings(monkeypatch, **SET)
    table = routing_table(ingest)
    assert table.sparkplug_filters == ["spBv1.0/plant1/#", "spBv1.0/plant2/#"]
    assert {r.queue for r in table.routes if r.kind == "sparkplug"} == {"sparkplug_rt"}
    assert table.routes[0].kind == "sparkplug"  # before the JSON routes
    options = sparkplug_options(ingest)
    assert (options.alerts_queue, options.standby_max_bytes) == ("sparkplug_alerts", 3145728)
    assert ingest.replica_index == 2
    s = options.sessions
    assert (s.rebirth_interval_s, s.max_parked, s.max_parked_bytes) == (7, 11, 131072)
    assert s.max_parked_bytes_total == 2097152
    assert (s.node_machine, s.device_machine) == ("{node}", "{node}.{device}")
    assert ingest.sparkplug_host_id == "conveyor-a"


def test_off_by_default_and_every_group_when_none_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert routing_table(settings(monkeypatch)).sparkplug_filters == []
    on = settings(monkeypatch, INGEST_SPARKPLUG="true")
    assert routing_table(on).sparkplug_filters == ["spBv1.0/#"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"INGEST_REPLICA_INDEX": "-1"}, "replica_index"),
        ({"INGEST_SPARKPLUG_STANDBY_BYTES": "1000"}, "sparkplug_standby_bytes"),
        ({"INGEST_SPARKPLUG_NODE_MACHINE": "{group}/{secret}"}, "NODE_MACHINE"),
        ({"INGEST_SPARKPLUG_DEVICE_MACHINE": "{0}"}, "DEVICE_MACHINE"),
        ({"INGEST_SPARKPLUG_HOST_ID": "a/b"}, "sparkplug_host_id"),
        ({"INGEST_SPARKPLUG_HOST_ID": "#"}, "sparkplug_host_id"),
        ({"INGEST_SPARKPLUG_REBIRTH_INTERVAL_S": "0"}, "sparkplug_rebirth_interval_s"),
        ({"INGEST_SPARKPLUG_MAX_PARKED": "0"}, "sparkplug_max_parked"),
        ({"INGEST_SPARKPLUG_MAX_PARKED_BYTES": "10"}, "sparkplug_max_parked_bytes"),
    ],
)
def test_absurd_settings_are_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(monkeypatch, INGEST_SPARKPLUG="true", **env)
    assert named.lower() in str(caught.value).lower()


@pytest.mark.parametrize("groups", ["a#b", "plant/+", "x+y"])
def test_a_group_that_is_not_a_topic_level_is_refused(
    monkeypatch: pytest.MonkeyPatch, groups: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(monkeypatch, INGEST_SPARKPLUG="true", INGEST_SPARKPLUG_GROUPS=groups)
    assert "not a Sparkplug group id" in str(caught.value)
