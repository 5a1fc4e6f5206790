"""The kubelet's part for the autoscale bench: kwok simulates pods without running them, so
this runs one in-process worker per ready pod of a Deployment, named as a worker in that pod
would be (``<pod name>:1``: in a pod the host name is the pod's name), and stops it with its
drain when the pod is deleted, as the SIGTERM of a real pod would. So replicas the operator
adds really drain the queue, and a scale-in really interrupts what the removed pods hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from conveyor.local_cluster import KubeCluster
from reliable_queue import QueueClient, Worker
from reliable_queue.working import JobHandler

log = logging.getLogger(__name__)


@dataclass
class Removal:
    """What the removal of one pod cost: the jobs its worker still held when the deletion was
    seen (within 0.2 s and a kubectl call: those run into the drain), and those still
    unfinished at the end of the drain (given back, to start over)."""

    pod: str
    held: int
    interrupted: int = 0


@dataclass
class PodWorkers:
    client: QueueClient
    cluster: KubeCluster
    namespace: str
    selector: str
    queue: str
    handler: JobHandler
    drain_timeout: float
    removals: list[Removal] = field(default_factory=list)
    _workers: dict[str, Worker] = field(default_factory=dict)
    _stopping: set[asyncio.Task[None]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        return len(self._workers)

    async def start(self) -> None:
        await self._sync()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        """Stop every worker (draining) and wait for the removals under way."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pod in list(self._workers):
            self._remove(pod, record=False)
        await self.settled()

    async def settled(self) -> None:
        """Wait for the drains of removed pods to end."""
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                await self._sync()
            except Exception as exc:  # noqa: BLE001 - a kubectl or Redis hiccup: look again
                log.warning("pod workers of %s: %s", self.queue, exc)

    async def _sync(self) -> None:
        ready = await asyncio.to_thread(self._ready_pods)
        for pod in ready - set(self._workers):
            worker = self.client.worker(
                self.queue,
                self.handler,
                drain_timeout=self.drain_timeout,
                worker_id=f"{pod}:1",  # the heartbeat as in a pod: every second
            )
            await worker.start()
            self._workers[pod] = worker
        for pod in set(self._workers) - ready:
            self._remove(pod, record=True)

    def _remove(self, pod: str, *, record: bool) -> None:
        worker = self._workers.pop(pod)
        removal = Removal(pod, held=worker.holding)
        if record:
            self.removals.append(removal)

        async def drain() -> None:
            await worker.stop()
            removal.interrupted = worker.counters.released

        task = asyncio.create_task(drain())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _ready_pods(self) -> set[str]:
        pods: list[dict[str, Any]] = self.cluster.get(
            "pods", "-n", self.namespace, "-l", self.selector
        )["items"]
        return {
            p["metadata"]["name"]
            for p in pods
            if "deletionTimestamp" not in p["metadata"]
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        }
