"""Property: arbitrary bytes on arbitrary topics never crash the ingestor's sorting step;
every input is either queued, dead-lettered with a reason, or counted as unrouted, and what is
queued can be encoded for Redis (a lone surrogate or an unreadable number once crashed here)."""

from __future__ import annotations

import json

from conveyor_ingestor import DEFAULT_ROUTES, Ingestor, RoutingTable, Subscriber, broker_config
from conveyor_ingestor.broker import Delivery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliable_queue import QueueClient
from reliable_queue.job import encode_payload

chars = st.characters() | st.sampled_from(["\ud800", "\udfff", "\n", "\\", "\x85"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, 2**63, 1e308])
    | st.floats()
    | st.text(chars, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(chars, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda n: b'{"t": ' + b"9" * n + b"}", st.integers(4000, 5000)),
    st.sampled_from([b'{"t": "\xed\xa0\x80"}', '{"t": 1}'.encode("utf-16"), b"[" * 5000]),
)
topics = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda m, k: f"{m}/{k}",
        st.text(max_size=10),
        st.sampled_from(["realtime", "spc", "tech", "alerts", "x"]),
    ),
)


def _ingestor() -> Ingestor:
    routes = RoutingTable(DEFAULT_ROUTES)
    subscriber = Subscriber(broker_config("mqtt://127.0.0.1:1", client_id="prop"), routes.filters)
    client = QueueClient.from_url("redis://127.0.0.1:1")  # never contacted by _sort
    return Ingestor(client=client, subscriber=subscriber, routes=routes)


ING = _ingestor()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(topic=topics, payload=payloads)
def test_every_input_is_routed_rejected_or_counted(topic: str, payload: bytes) -> None:
    unrouted_before = ING.metrics.unrouted._value.get()
    outcome = ING._sort([Delivery(topic, payload, mid=1, qos=1, generation=1, received_at=1.0)])
    queued = sum(len(v) for v in outcome.jobs.values())
    unrouted = ING.metrics.unrouted._value.get() - unrouted_before
    assert queued + len(outcome.dead) + unrouted == 1
    for letter in outcome.dead:
        assert letter.reason
        assert letter.error
        assert letter.data["topic"] == topic
    for jobs in outcome.jobs.values():
        encode_payload(jobs[0].data)  # what goes to Redis encodes, as the client will
