"""One owner per queue, recorded atomically in Redis: the first claim wins and everyone else is
told who owns the queue; only the owner (by uid) can let go; a stale owner's claim can be taken
over; deleting a queue's data does not give the queue up."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from reliable_queue import QueueClient, QueueOwner, UsageError

pytestmark = pytest.mark.integration

TEAM_A = QueueOwner(namespace="team-a", name="orders", uid="uid-a")
TEAM_B = QueueOwner(namespace="team-b", name="orders", uid="uid-b")


async def test_first_claim_wins_and_the_second_learns_the_owner(client: QueueClient) -> None:
    assert await client.queue_owner("orders") is None
    first = await client.claim_queue("orders", TEAM_A)
    assert TEAM_A.same_as(first)
    assert (first.namespace, first.name) == ("team-a", "orders")
    assert first.claimed_at_ms > 0

    second = await client.claim_queue("orders", TEAM_B)
    assert not TEAM_B.same_as(second)
    assert second == first  # the owner, unchanged
    assert str(second) == "team-a/orders (uid uid-a)"
    again = await client.claim_queue("orders", TEAM_A)
    assert again == first  # idempotent: a reconcile claims on every pass
    assert await client.queue_owner("orders") == first


async def test_only_the_owner_can_let_go(client: QueueClient) -> None:
    await client.claim_queue("orders", TEAM_A)
    assert await client.release_queue("orders", TEAM_B) is False
    assert TEAM_A.same_as(await client.queue_owner("orders"))

    assert await client.release_queue("orders", TEAM_A) is True
    assert await client.queue_owner("orders") is None
    assert TEAM_B.same_as(await client.claim_queue("orders", TEAM_B))
    # A recreated MessageQueue of the first's name has a new uid: it is not the owner.
    reborn = QueueOwner(namespace="team-a", name="orders", uid="uid-a2")
    assert await client.release_queue("orders", TEAM_A) is False
    assert not reborn.same_as(await client.claim_queue("orders", reborn))


async def test_a_stale_owner_is_replaced_only_while_it_still_holds_the_claim(
    client: QueueClient,
) -> None:
    await client.claim_queue("orders", TEAM_A)
    wrong = await client.claim_queue("orders", TEAM_B, replacing="uid-someone-else")
    assert TEAM_A.same_as(wrong)
    taken = await client.claim_queue("orders", TEAM_B, replacing=TEAM_A.uid)
    assert TEAM_B.same_as(taken)
    assert taken.namespace == "team-b"


async def test_concurrent_claims_leave_exactly_one_owner(client: QueueClient) -> None:
    contenders = [QueueOwner(namespace=f"ns-{i}", name="q", uid=f"uid-{i}") for i in range(30)]
    seen = await asyncio.gather(*(client.claim_queue("contested", c) for c in contenders))
    owners = {o.uid for o in seen}
    assert len(owners) == 1
    [winner] = owners
    assert sum(c.same_as(o) for c, o in zip(contenders, seen, strict=True)) == 1
    assert (await client.queue_owner("contested")) == seen[0]
    assert winner.startswith("uid-")


async def test_deleting_the_data_keeps_the_claim(client: QueueClient, raw_redis: Redis) -> None:
    await client.claim_queue("orders", TEAM_A)
    await client.enqueue("orders", {"n": 1})
    await client.delete_queue("orders")
    assert (await client.queue_stats("orders")).pending == 0
    assert TEAM_A.same_as(await client.queue_owner("orders"))
    assert await raw_redis.exists("conveyor:{orders}:owner")  # in the queue's slot


def test_an_owner_needs_a_uid() -> None:
    with pytest.raises(UsageError, match="uid"):
        QueueOwner(namespace="a", name="b", uid="")
