"""The default queues are written once, in ``conveyor_messages.DEFAULT_QUEUES``.

The original design is pinned here, once. The Python readers (the ingestor's default routes,
the worker's processors, ``conveyor work``) follow the table; what cannot import it is checked
against it: the chart's default MessageQueues (values.yaml, and the chart README generated from
it), the processors table of docs/workers.md and the routes docs/ingestor.md shows. A check
that fails names the file, the queue, what differs and what to change.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any, get_args

import pytest
import yaml
from conveyor_ingestor import DEFAULT_ROUTES
from conveyor_messages import DEFAULT_QUEUES, Kind, default_queue, queue_for_kind
from conveyor_worker import processor_for

from reliable_queue import QueueClient, QueuePolicy
from tests.helpers import ROOT, worker_context

TABLE = "DEFAULT_QUEUES (services/messages/conveyor_messages/queues.py)"
VALUES = ROOT / "charts" / "conveyor" / "values.yaml"
CHART_README = ROOT / "charts" / "conveyor" / "README.md"
REGENERATE = "then run python hack/chart_readme.py"
LIBRARY_KEEPS = QueuePolicy().done_max_count  # what a MessageQueue without retention keeps


def test_the_table_is_the_original_design() -> None:
    assert [
        (q.name, q.priority, q.concurrency, q.topic_filter, q.kind, q.writes_influx)
        for q in DEFAULT_QUEUES
    ] == [
        ("alerts", 10, 1, "+/alerts", "alert", False),
        ("mqtt_realtime", 5, 3, "+/realtime", "realtime", True),
        ("mqtt_spc", 3, 2, "+/spc", "spc", True),
        ("mqtt_tech", 1, 1, "+/tech", "tech", True),
    ]


def test_each_kind_of_message_has_one_default_queue() -> None:
    kinds = [q.kind for q in DEFAULT_QUEUES]
    assert sorted(kinds) == sorted(get_args(Kind)), "one default queue per Kind, no more"
    assert all(queue_for_kind(q.kind) is q and default_queue(q.name) is q for q in DEFAULT_QUEUES)
    assert default_queue("custom") is None


def test_the_ingestors_default_routes_are_the_tables() -> None:
    # No priority of their own: the queue's default (its MessageQueue's spec.priority) applies.
    assert [(r.filter, r.queue, r.priority, r.kind) for r in DEFAULT_ROUTES] == [
        (q.topic_filter, q.name, None, q.kind) for q in DEFAULT_QUEUES
    ]


async def test_every_default_queue_has_a_processor_and_no_other_queue_does() -> None:
    nowhere = "redis://127.0.0.1:9"  # never connected: nothing runs
    async with (
        QueueClient.from_url(nowhere) as client,
        worker_context(client, nowhere) as ctx,
    ):
        assert {q.name: processor_for(q.name, ctx) is not None for q in DEFAULT_QUEUES} == {
            q.name: True for q in DEFAULT_QUEUES
        }
        assert processor_for("custom", ctx) is None
        assert ctx.settings.alerts_queue == queue_for_kind("alert").name


def test_conveyor_work_follows_the_table() -> None:
    from conveyor.work_command import INFLUX_QUEUES, default_concurrency

    assert tuple(q.name for q in DEFAULT_QUEUES if q.writes_influx) == INFLUX_QUEUES
    assert [default_concurrency(q.name) for q in DEFAULT_QUEUES] == [
        q.concurrency for q in DEFAULT_QUEUES
    ]
    assert default_concurrency("custom") == 1


# --- the chart ------------------------------------------------------------------------------


def chart_differences(queues: Sequence[Mapping[str, Any]], *, source: str, fix: str) -> list[str]:
    """What the chart's ``queues`` list says differently from the table, one line each."""
    listed = [str(q.get("queue")) for q in queues]
    wanted = [q.name for q in DEFAULT_QUEUES]
    if listed != wanted:
        return [
            f"{source} lists the queues {listed}, {TABLE} has {wanted} (in this order): "
            f"make them the same, {fix}"
        ]
    problems = []
    for i, (entry, default) in enumerate(zip(queues, DEFAULT_QUEUES, strict=True)):
        expected = {
            "name": default.name.replace("_", "-"),  # a Kubernetes name: no underscores
            "priority": default.priority,
            "concurrency": default.concurrency,
            "retention.finished.maxCount": default.finished_records,
        }
        finished = (entry.get("retention") or {}).get("finished") or {}
        given = {**entry, "retention.finished.maxCount": finished.get("maxCount", LIBRARY_KEEPS)}
        for key, value in expected.items():
            if given.get(key) != value:
                problems.append(
                    f"{source} queues[{i}] ({default.name}): {key} is {given.get(key)!r}, {TABLE} "
                    f"says {value!r}: change one of them, {fix}"
                )
    return problems


def _values_queues() -> list[dict[str, Any]]:
    queues: list[dict[str, Any]] = yaml.safe_load(VALUES.read_text())["queues"]
    return queues


def test_the_charts_default_messagequeues_are_the_table() -> None:
    problems = chart_differences(
        _values_queues(), source="charts/conveyor/values.yaml", fix=REGENERATE
    )
    assert not problems, "\n".join(problems)


def test_the_chart_readme_shows_the_table() -> None:
    row = next(
        (line for line in CHART_README.read_text().splitlines() if line.startswith("| `queues` |")),
        None,
    )
    assert row is not None, f"{CHART_README} has no `queues` row: run python hack/chart_readme.py"
    shown = yaml.safe_load(row.split("|")[2].strip().strip("`"))
    problems = chart_differences(
        shown, source="charts/conveyor/README.md", fix="run python hack/chart_readme.py"
    )
    assert not problems, "\n".join(problems)


def test_a_chart_that_drifted_is_named_with_what_to_change() -> None:
    queues = _values_queues()
    queues[1] = {**queues[1], "concurrency": 4}
    assert chart_differences(queues, source="values.yaml", fix=REGENERATE) == [
        f"values.yaml queues[1] (mqtt_realtime): concurrency is 4, {TABLE} says 3: "
        f"change one of them, {REGENERATE}"
    ]
    [problem] = chart_differences(queues[:3], source="values.yaml", fix=REGENERATE)
    assert "lists the queues ['alerts', 'mqtt_realtime', 'mqtt_spc']" in problem


# --- the docs -------------------------------------------------------------------------------


def test_the_workers_doc_lists_each_default_queue_with_its_concurrency() -> None:
    doc = (ROOT / "docs" / "workers.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|.*\| (\d+) \|$", doc, flags=re.MULTILINE)
    shown = {queue: int(concurrency) for queue, concurrency in rows}
    wanted = {q.name: q.concurrency for q in DEFAULT_QUEUES}
    assert shown == wanted, (
        f"docs/workers.md's processors table gives {shown} (queue: concurrency), {TABLE} "
        f"says {wanted}: fix the table's rows"
    )


async def test_the_ingestor_doc_shows_what_print_routes_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.ingest_command import cmd_ingest

    monkeypatch.delenv("INGEST_ROUTES", raising=False)
    monkeypatch.delenv("INGEST_ROUTES_FILE", raising=False)
    assert await cmd_ingest(argparse.Namespace(print_routes=True)) == 0
    printed = capsys.readouterr().out.splitlines()
    doc = (ROOT / "docs" / "ingestor.md").read_text().splitlines()
    start = doc.index("$ conveyor ingest --print-routes") + 1
    shown = doc[start : start + len(DEFAULT_QUEUES)]
    assert shown == printed, (
        "docs/ingestor.md shows other routes than `conveyor ingest --print-routes` prints: "
        "replace the lines after its `$ conveyor ingest --print-routes` with:\n"
        + "\n".join(printed)
    )
