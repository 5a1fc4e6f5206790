"""conveyor_operator: MessageQueue resources -> worker Deployments sized to the queue's backlog.

The typed MessageQueue spec and its defaults (``spec``), the scaling decision (``scaling``), the
checks of a spec against what the installer allows (``allowances``), the worker Deployment and
PodDisruptionBudget rendered from a MessageQueue (``rendering``), its queue policy
(``policies``), the claim of a Redis queue by one MessageQueue (``claiming``), when a queue
alert fires (``queue_alerts``) and which pods a scale-in removes (``deletion_costs``): pure
decisions. The reconcile of a MessageQueue (``reconciling``) and its autoscaler daemon
(``autoscaling``) make the calls, and ``handlers`` registers them with kopf (imported by
``conveyor operator``).
"""

from conveyor_operator.allowances import Allowances, spec_problems
from conveyor_operator.rendering import WorkerDefaults, render_deployment, render_disruption_budget
from conveyor_operator.scaling import Decision, Memory, Observation, ScalingSpec, decide
from conveyor_operator.spec import MessageQueueSpec

__all__ = [
    "Allowances",
    "Decision",
    "Memory",
    "MessageQueueSpec",
    "Observation",
    "ScalingSpec",
    "WorkerDefaults",
    "decide",
    "render_deployment",
    "render_disruption_budget",
    "spec_problems",
]
