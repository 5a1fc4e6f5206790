"""Jobs as handlers see them, and how they are encoded in Redis.

A job is stored as one hash field, the *envelope* ``<enqueued_ms>|<priority>|<payload>``: the
enqueue script writes the header (with Redis' own clock), the payload is the job's data as JSON.
Keeping the header in front of the payload, rather than in hashes of its own, costs no extra
Redis entry per pending job; the Lua scripts read the priority from it when a job returns to
pending.
"""

from __future__ import annotations

import base64
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from reliable_queue.errors import InvalidJob

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
MAX_JOB_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed job, handed to a handler.

    ``attempt`` is 1 on the first try and grows with every failed attempt. ``enqueued_at`` is a
    UNIX time in seconds from the Redis server's clock.
    """

    id: str
    queue: str
    data: Any
    priority: int
    attempt: int
    enqueued_at: float
    token: str = field(repr=False)


class _JobIds:
    """Unique ids, cheaply: a random 60-bit prefix per process and a counter.

    Base32 lowercase, so an id never starts with '-' (which a shell would take for an
    option) and needs no quoting anywhere. A forked child draws a new prefix.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prefix = base64.b32encode(os.urandom(8)).decode()[:12].lower()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


new_job_id = _JobIds()
os.register_at_fork(after_in_child=new_job_id.reset)


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidJob(f"priority must be an integer, not {type(priority).__name__}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidJob(
            f"priority {priority} is out of range: use {PRIORITY_MIN}..{PRIORITY_MAX}, "
            "higher runs first"
        )
    return int(priority)  # a plain int: an IntEnum would reach Redis as its repr


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJob(f"job_id must be a non-empty string of at most {MAX_JOB_ID_LENGTH} chars")
    return job_id


def encode_payload(data: Any) -> bytes:
    """The job's data as JSON bytes (pydantic models, dataclasses and datetimes included)."""
    try:
        return to_json(data)
    except PydanticSerializationError as exc:
        raise InvalidJob(f"job data is not JSON-serialisable: {exc}") from exc


# A frozen dataclass's __init__ sets each field through object.__setattr__; the slots' own
# descriptors set them at about a third of the cost, which a worker pays for every job it claims.
_new_job = object.__new__
_set_id, _set_queue, _set_data, _set_priority, _set_attempt, _set_enqueued_at, _set_token = (
    Job.__dict__[name].__set__
    for name in ("id", "queue", "data", "priority", "attempt", "enqueued_at", "token")
)


def decode_envelope(
    *, queue: str, job_id: bytes, token: bytes, envelope: bytes, fails: bytes
) -> Job:
    enqueued_ms, priority, payload = envelope.split(b"|", 2)
    job = _new_job(Job)
    _set_id(job, job_id.decode())
    _set_queue(job, queue)
    _set_data(job, from_json(payload))
    _set_priority(job, int(priority))
    _set_attempt(job, int(fails) + 1)
    _set_enqueued_at(job, int(enqueued_ms) / 1000)
    _set_token(job, token.decode())
    return job


def split_envelope(envelope: bytes) -> tuple[float, int, bytes]:
    """(enqueued_at seconds, priority, raw payload) of an envelope."""
    enqueued_ms, priority, payload = envelope.split(b"|", 2)
    return int(enqueued_ms) / 1000, int(priority), payload
