"""The queues' endpoints: every queue's figures with its recent throughput, the sampled history
for the dashboard's sparklines, and a queue's dead letters - listed a page at a time, replayed
or deleted. Who may call each is the route table's business (:mod:`conveyor_gateway.routes`).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from conveyor_gateway.models import (
    DeadLetter,
    DeadLetterPage,
    History,
    HistorySample,
    Purged,
    QueueFigures,
    Replayed,
    Stats,
    json_response,
)
from conveyor_gateway.parameters import (
    LIMIT,
    MINUTES,
    OFFSET,
    known_queue,
    purge_ids,
    replay_ids,
)
from conveyor_gateway.state import state_of
from reliable_queue.history import COARSE_S

log = logging.getLogger(__name__)


async def stats(request: Request) -> Response:
    gateway = state_of(request)
    doc = await gateway.client.stats()
    throughput = await gateway.history.throughput(doc["queues"])
    queues = {}
    for name, figures in doc["queues"].items():
        tp = throughput[name]
        queues[name] = QueueFigures(
            **figures,
            completed_last_minute=tp.completed,
            enqueued_last_minute=tp.enqueued,
            rate_per_s=round(tp.completed_per_s, 3),
            arrival_per_s=round(tp.enqueued_per_s, 3),
            rate_window_s=round(tp.window_s, 3),
        )
    return json_response(Stats(queues=queues, workers=doc["workers"]))


async def stats_history(request: Request) -> Response:
    gateway = state_of(request)
    seconds = MINUTES.read(request) * 60
    history = gateway.history
    found = await history.series(await gateway.client.queues(), seconds)
    return json_response(
        History(
            interval_s=history.interval_s if seconds <= history.keep_s else COARSE_S,
            queues={
                # Samples as stored: built, not validated again (up to 1,440 per queue).
                q: [HistorySample.model_construct(**s.to_dict()) for s in samples]
                for q, samples in sorted(found.items())
                if samples
            },
        )
    )


async def dead_letters(request: Request) -> Response:
    client = state_of(request).client
    offset = OFFSET.read(request)
    limit = LIMIT.read(request)
    queue = await known_queue(request)
    letters = await client.dead_letters(queue, offset=offset, limit=limit)
    total = await client.dead_letter_count(queue)
    return json_response(
        DeadLetterPage(
            queue=queue,
            total=total,
            offset=offset,
            limit=limit,
            dead_letters=[DeadLetter.model_validate(d, from_attributes=True) for d in letters],
        )
    )


async def replay(request: Request) -> Response:
    queue = await known_queue(request)
    ids = await replay_ids(request)
    replayed = await state_of(request).client.replay_dead_letters(queue, ids)
    log.info("replayed %d dead letters of %s through the gateway", replayed, queue)
    return json_response(Replayed(queue=queue, replayed=replayed))


async def purge(request: Request) -> Response:
    queue = await known_queue(request)
    purged = await state_of(request).client.purge_dead_letters(queue, purge_ids(request))
    log.info("purged %d dead letters of %s through the gateway", purged, queue)
    return json_response(Purged(queue=queue, purged=purged))
