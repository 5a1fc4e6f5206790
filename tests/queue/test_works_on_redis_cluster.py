"""The queue on a real 3-master Redis Cluster: every queue's keys share one hash tag, so its
scripts run in one slot; queues spread over the masters and all work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reliable_queue import Job, PermanentError, QueueClient
from tests.helpers import eventually
from tests.servers import RedisClusterServers, require_binary, start_redis_cluster

pytestmark = pytest.mark.integration

QUEUES = ["alerts", "mqtt_realtime", "mqtt_spc", "mqtt_tech", "custom-1", "custom-2"]


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    server = require_binary("redis-server", install="apt-get install redis-server")
    cli = require_binary("redis-cli", install="apt-get install redis-tools")
    cluster = start_redis_cluster(server, cli, tmp_path)
    yield cluster
    cluster.stop()


async def test_queues_spread_over_masters_and_work(redis_cluster: RedisClusterServers) -> None:
    with redis.RedisCluster.from_url(redis_cluster.url) as rc:
        masters = {rc.get_node_from_key(f"conveyor:{{{q}}}:pending").name for q in QUEUES}
    assert len(masters) >= 2  # the test really spans nodes

    processed: dict[str, int] = dict.fromkeys(QUEUES, 0)

    async def handler(job: Job) -> None:
        if job.data.get("poison"):
            raise PermanentError("poison")
        processed[job.queue] += 1

    async with QueueClient.from_url(redis_cluster.url, cluster=True) as client:
        stops = [await client.start_worker(q, handler, concurrency=4) for q in QUEUES]
        for q in QUEUES:
            await client.enqueue_many(q, [{"n": n} for n in range(200)])
            await asyncio.gather(*(client.enqueue(q, {"n": n}, priority=5) for n in range(50)))
            await client.enqueue(q, {"poison": True}, job_id=f"{q}-poison")

        async def all_done() -> bool:
            return all(n == 250 for n in processed.values()) and all(
                [await client.dead_letter_count(q) == 1 for q in QUEUES]
            )

        await eventually(all_done, timeout=30, what="every queue drained")
        stats = await client.stats()
        for stop in stops:
            await stop()
        assert stats["workers"] == "running"
        for q in QUEUES:
            assert stats["queues"][q]["completed"] == 250
            assert stats["queues"][q]["failed"] == 1
            assert await client.replay_dead_letters(q) == 1
            assert await client.job_state(q, f"{q}-poison") == "pending"


async def test_sparkplug_sessions_are_kept_on_a_cluster(redis_cluster: RedisClusterServers) -> None:
    """The ingestor's Sparkplug store on Redis Cluster: sessions of edge nodes on different
    masters taken, saved and loaded, a parked list appended, then written again whole (scripts on
    the node's own slot: a cluster pipeline refuses RENAME and the like); held by one replica
    until it lets go or another expects its last message, and its writes refused once another
    holds the node."""
    from conveyor_ingestor.sparkplug.sessions import Parked, Session
    from conveyor_ingestor.sparkplug.store import SessionStore, session_key

    nodes = [f"plant/line{i}" for i in range(6)]
    with redis.RedisCluster.from_url(redis_cluster.url) as rc:
        assert len({rc.get_node_from_key(session_key(n)).name for n in nodes}) >= 2
    store = SessionStore.from_url(redis_cluster.url, cluster=True)
    try:
        taken = await store.take(nodes, replica="a", live=["a"])
        assert all(t.session.seq is None for t in taken.values() if not isinstance(t, str))
        sessions = [Session(n, seq=5, online=True, changed=True, seq_changed=True) for n in nodes]
        for s in sessions:
            for i in range(3):
                s.parked.append(
                    Parked(f"spBv1.0/plant/NDATA/{s.node_key}", bytes([i]), i, "gap", None)
                )
            s.parked_new = list(s.parked)
        assert await store.save(sessions, replica="a", last={nodes[0]: "d1"}) == []
        for s in sessions:
            s.parked = s.parked[2:]  # two taken by a birth, one still waits
            s.parked_rewrite = True
        assert await store.save(sessions, replica="a", last={}) == []
        refused = await store.take(nodes, replica="b", live=["a", "b"])
        assert {r.holder for r in refused.values()} == {"a"}  # type: ignore[union-attr]
        assert refused[nodes[0]].last == "d1"
        stolen = await store.take(
            nodes[:1], replica="b", live=["a", "b"], expected={nodes[0]: "d1"}
        )
        assert stolen[nodes[0]].session.seq == 5  # type: ignore[union-attr]
        await store.let_go(nodes, replica="a")
        loaded = await store.take(nodes, replica="b", live=["a", "b"])  # a let go, or lost one
        assert [t.session.seq for t in loaded.values()] == [5] * 6  # type: ignore[union-attr]
        assert [[p.payload for p in t.session.parked] for t in loaded.values()] == [  # type: ignore[union-attr]
            [b"\x02"]
        ] * 6
        assert loaded[nodes[0]].last == "d1"  # type: ignore[union-attr]
        assert await store.save(sessions[:1], replica="a", last={}) == [nodes[0]]  # fenced
    finally:
        await store.close()


async def test_queue_history_is_kept_on_a_cluster(redis_cluster: RedisClusterServers) -> None:
    """The history script on each queue's slot, read back across masters with Redis's time."""
    queues = [f"q{i}" for i in range(6)]
    async with QueueClient.from_url(redis_cluster.url, cluster=True) as client:
        for q in queues:
            await client.enqueue_many(q, [{"q": q}])
        stats = await client.stats(queues)
        await client.record_history(stats, interval_s=2, keep_s=600)
        now, found = await client.history(queues, seconds=60, keep_s=600)
        _, firsts = await client.history(queues, seconds=60, keep_s=600, first_only=True)
    assert {q: [s.pending for s in found[q]] for q in queues} == {q: [1] for q in queues}
    assert firsts == found
    assert all(now - 60 < found[q][0].at <= now for q in queues)
