"""Who handles which Sparkplug edge node (rendezvous over the live replicas), what a replica
keeps of the others' nodes, and where a taker resumes. Pure; the replicas themselves are in
tests/ingest/test_sparkplug_edge_node.py."""

from __future__ import annotations

from collections import Counter

from conveyor_ingestor.broker import Delivery
from conveyor_ingestor.sparkplug.handling import _after, digest
from conveyor_ingestor.sparkplug.owners import owner_of
from conveyor_ingestor.sparkplug.standby import Standby

NODES = [f"plant/node{i}" for i in range(3000)]


def delivery(i: int, size: int = 10, node: str = "n") -> Delivery:
    return Delivery(f"spBv1.0/plant/NDATA/{node}", bytes([i % 256]) * size, i, 1, 0, float(i))


def test_nodes_are_shared_evenly_and_a_change_moves_only_what_it_must() -> None:
    three = ("ingest-0", "ingest-1", "ingest-2")
    owners = {node: owner_of(node, three) for node in NODES}
    shares = Counter(owners.values())
    assert set(shares) == set(three)
    assert all(abs(share - 1000) < 150 for share in shares.values()), shares
    assert owners == {node: owner_of(node, tuple(reversed(three))) for node in NODES}

    four = (*three, "ingest-3")
    moved = [node for node in NODES if owner_of(node, four) != owners[node]]
    assert {owner_of(node, four) for node in moved} == {"ingest-3"}  # only to the newcomer
    assert abs(len(moved) - 750) < 150

    two = ("ingest-0", "ingest-2")
    moved = [node for node in NODES if owner_of(node, two) != owners[node]]
    assert {owners[node] for node in moved} == {"ingest-1"}  # only the leaver's
    assert owner_of("plant/node0", ()) is None


def test_the_standby_keeps_each_nodes_last_messages_within_its_window_and_bytes() -> None:
    standby = Standby(window_s=10, max_bytes=1000)
    for i in range(20):
        standby.add("a" if i % 2 else "b", delivery(i, node="a" if i % 2 else "b"), now=i)
    assert standby.nodes() == ["b", "a"]
    assert standby.bytes == 100  # ten seconds' worth, of ten bytes each
    assert [d.mid for d in standby.take("a")] == [11, 13, 15, 17, 19]
    assert standby.take("a") == []
    assert standby.bytes == 50
    standby.expire(now=100)
    assert (standby.nodes(), standby.bytes, standby.dropped) == ([], 0, 0)

    for i in range(10):  # over the bytes: the oldest go, counted
        standby.add("c", delivery(i, size=300, node="c"), now=200)
    assert [d.mid for d in standby.take("c")] == [7, 8, 9]
    assert standby.dropped == 7
    assert standby.bytes == 0


def test_a_taker_resumes_after_the_last_message_stored_or_takes_all_it_kept() -> None:
    kept = [delivery(i) for i in range(6)]
    assert _after(kept, digest(kept[3])) == kept[4:]
    assert _after(kept, digest(kept[5])) == []
    assert _after(kept, None) == kept  # nothing stored yet: all of it
    assert _after(kept, "not-kept") == kept  # kept too little, or the holder was ahead
    again = [*kept, delivery(3)]  # the same bytes again later: after the first, some twice
    assert _after(again, digest(kept[3])) == again[4:]
