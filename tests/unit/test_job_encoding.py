"""Job ids, priorities, payload encoding and the envelope format."""

from __future__ import annotations

import datetime as dt
import enum

import pytest

from reliable_queue import PRIORITY_MAX, PRIORITY_MIN, InvalidJob, InvalidQueueName
from reliable_queue.job import (
    check_job_id,
    check_priority,
    decode_envelope,
    encode_payload,
    new_job_id,
)
from reliable_queue.keys import QueueKeys, queue_from_dead_letter_name


def test_new_ids_are_short_unique_and_shell_safe() -> None:
    ids = {new_job_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(13 <= len(i) <= 20 and i.isalnum() and i == i.lower() for i in ids)


def test_a_forked_child_draws_other_ids() -> None:
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, new_job_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 100).decode()
    assert child_id[:12] != new_job_id()[:12]


@pytest.mark.parametrize("priority", [PRIORITY_MIN - 1, PRIORITY_MAX + 1, 1.5, True])
def test_out_of_range_priority_is_rejected(priority: object) -> None:
    with pytest.raises(InvalidJob):
        check_priority(priority)  # type: ignore[arg-type]


def test_an_int_subclass_priority_becomes_a_plain_int() -> None:
    # redis-py sends an IntEnum as its repr ("<Level.HIGH: 5>"), which the scripts cannot read.
    class Level(enum.IntEnum):
        HIGH = 5

    priority = check_priority(Level.HIGH)
    assert type(priority) is int
    assert priority == 5


@pytest.mark.parametrize("job_id", ["", "x" * 257])
def test_bad_job_ids_are_rejected(job_id: str) -> None:
    with pytest.raises(InvalidJob):
        check_job_id(job_id)


def test_payload_must_be_json() -> None:
    assert (
        encode_payload({"t": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)})
        == b'{"t":"2026-01-02T00:00:00Z"}'
    )
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        encode_payload({"x": object()})


def test_envelope_decodes_to_a_job() -> None:
    job = decode_envelope(
        queue="q", job_id=b"j1", token=b"7", envelope=b'1700000000123|-5|{"a":"x|y"}', fails=b"2"
    )
    assert (job.id, job.priority, job.attempt, job.data, job.token) == (
        "j1",
        -5,
        3,
        {"a": "x|y"},
        "7",
    )
    assert job.enqueued_at == pytest.approx(1_700_000_000.123)


def test_queue_keys_share_one_hash_tag() -> None:
    keys = QueueKeys.for_queue("mqtt_realtime")
    assert all(k.startswith("conveyor:{mqtt_realtime}:") for k in keys.all())
    assert len(set(keys.all())) == len(keys.all())


@pytest.mark.parametrize("name", ["", "a b", "a{b}", "a:b", "-x", "x" * 101])
def test_unsafe_queue_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidQueueName):
        QueueKeys.for_queue(name)


def test_dead_letter_spelling_is_accepted() -> None:
    assert queue_from_dead_letter_name("dead:alerts") == "alerts"
    assert queue_from_dead_letter_name("alerts") == "alerts"
