"""What the operator's handlers share: the installer's configuration (``OperatorConfig``), the
clients made at startup (``Operator``, in kopf's memo) and what the operator remembers of each
MessageQueue (``QueueState``, in kopf's per-object memo, so it goes with the MessageQueue)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from conveyor_messages import queue_for_kind

from conveyor_operator.allowances import Allowances, spec_problems
from conveyor_operator.applying import KubeApis
from conveyor_operator.deletion_costs import DeletionCosts
from conveyor_operator.metrics import OperatorMetrics
from conveyor_operator.policies import policy_problems
from conveyor_operator.queue_alerts import AlertMemory
from conveyor_operator.rendering import WorkerDefaults, worker_problems
from conveyor_operator.scaling import Memory
from reliable_queue import QueueClient, QueueUnavailable, ReliableQueueError

REDIS_ERRORS = (QueueUnavailable, ReliableQueueError)


@dataclass
class OperatorConfig:
    redis_url: str
    worker: WorkerDefaults
    allowances: Allowances | None = None
    """Default: the operator's worker image only, no tolerations or node selectors."""
    redis_cluster: bool = False
    prefix: str = "conveyor.io"
    backlogged_after_s: float = 300.0
    clusterwide: bool = False
    peering_lifetime_s: int = 15
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    alerts_queue: str = queue_for_kind("alert").name
    """Where queue alerts go, beside machine alerts (the alerts worker delivers them)."""

    def __post_init__(self) -> None:
        env = frozenset(str(e["name"]) for e in self.worker.env)
        if self.allowances is None:
            self.allowances = Allowances(worker_image=self.worker.image, operator_env=env)
        else:
            self.allowances = dataclasses.replace(self.allowances, operator_env=env)


@dataclass
class Operator:
    """The running operator: its configuration and the clients the startup handler made."""

    config: OperatorConfig
    queues: QueueClient
    apis: KubeApis
    costs: DeletionCosts = field(default_factory=DeletionCosts)

    @staticmethod
    def of(memo: kopf.Memo) -> Operator:
        operator: Operator = memo["operator"]
        return operator

    def problems_of(self, spec: Mapping[str, Any]) -> list[str]:
        """What in the spec the installer does not allow, or the API would refuse."""
        assert self.config.allowances is not None  # set by OperatorConfig.__post_init__
        return (
            spec_problems(spec, self.config.allowances)
            + worker_problems(spec)
            + policy_problems(spec)
        )


@dataclass
class QueueState:
    """What the operator remembers of one MessageQueue between events and polls."""

    memory: Memory = field(default_factory=Memory)
    last_counts: tuple[float, int, int] | None = None  # (time, enqueued, completed)
    concurrency: int | None = None  # raised above spec.concurrency by plan_capacity, if so
    waiting: bool = False  # no workers: the queue is another's, or the claim was not checked
    alerts: AlertMemory | None = None  # None: not yet read back from status (resumed)
    generation: int = 0  # the newest spec a reconcile has seen: a poll of an older is stale
    costs_waited: bool = False  # this scale-in waited a poll for new deletion costs

    def restart(self) -> None:
        """The autoscaler starts (again, after a standby's pause): what it remembered is old."""
        self.alerts, self.last_counts, self.costs_waited = None, None, False

    @staticmethod
    def of(memo: kopf.Memo) -> QueueState:
        """The MessageQueue's, from kopf's per-object memo (made on first use)."""
        state: QueueState = memo.setdefault("queue_state", QueueState())
        return state

    @staticmethod
    def known(memo: kopf.Memo) -> QueueState | None:
        """The MessageQueue's, if anything made it."""
        state: QueueState | None = memo.get("queue_state")
        return state
