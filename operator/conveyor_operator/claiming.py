"""One MessageQueue per Redis queue: claiming the queue before acting on it.

Queue names are global in a Redis; MessageQueues are namespaced. The first MessageQueue that
reconciles records itself (namespace, name, uid) as the queue's owner in Redis, atomically
(``QueueClient.claim_queue``). Any other MessageQueue naming the queue, in any namespace, is
refused: no workers, no policy written, nothing of the queue deleted when it goes. Deleting
the owner releases the claim (only if it is still the owner's, by uid), and a waiting
MessageQueue claims the queue at its next poll.

A claim whose owner is gone without releasing it (deleted while Redis was down, or by force)
is taken over once the operator sees that the owner no longer exists: the MessageQueue is not
found, or is a newer object of the same name (another uid). Where the operator may not look
(another namespace, for a namespaced operator) the owner is taken to be alive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from conveyor_operator.applying import KubeApis, messagequeue_uid
from reliable_queue import QueueClient, QueueOwner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claim:
    owner: QueueOwner
    mine: bool

    def refusal(self, queue: str) -> str:
        return (
            f"queue {queue} is owned by MessageQueue {self.owner.namespace}/{self.owner.name} "
            f"(uid {self.owner.uid}): no workers, its policy and data untouched; name another "
            "queue, or delete the owner"
        )


def owner_of(body: Mapping[str, Any]) -> QueueOwner:
    meta = body["metadata"]
    return QueueOwner(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])


async def claim(queues: QueueClient, apis: KubeApis, body: Mapping[str, Any]) -> Claim:
    """Claim the MessageQueue's queue (idempotent); raises QueueUnavailable without Redis."""
    me, queue = owner_of(body), body["spec"]["queue"]
    owner = await queues.claim_queue(queue, me)
    if me.same_as(owner):
        return Claim(owner, mine=True)
    if await _gone(apis, owner):
        log.info("taking over queue %s from %s, which no longer exists", queue, owner)
        owner = await queues.claim_queue(queue, me, replacing=owner.uid)
    return Claim(owner, mine=me.same_as(owner))


async def _gone(apis: KubeApis, owner: QueueOwner) -> bool:
    if not (owner.namespace and owner.name):
        return False  # not written by an operator: leave it to a person
    try:
        uid = await messagequeue_uid(apis, owner.namespace, owner.name)
    except ApiException as exc:
        if exc.status not in (401, 403):
            log.warning("cannot look up the owner %s of a queue: %s", owner, exc.reason)
        return False
    return uid != owner.uid
