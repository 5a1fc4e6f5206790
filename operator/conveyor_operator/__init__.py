"""conveyor_operator: MessageQueue resources -> worker Deployments sized to the queue's backlog.

The scaling decision (``scaling``), the checks of a spec against what the installer allows
(``allowances``), the worker Deployment, PodDisruptionBudget and queue policy rendered from a
MessageQueue (``rendering``), the claim of a Redis queue by one MessageQueue (``claiming``), and
the kopf handlers that tie them together (``handlers``, imported by ``conveyor operator``).
"""

from conveyor_operator.allowances import Allowances, spec_problems
from conveyor_operator.rendering import (
    WorkerDefaults,
    queue_policy,
    render_deployment,
    render_disruption_budget,
)
from conveyor_operator.scaling import Decision, Memory, Observation, ScalingSpec, decide

__all__ = [
    "Allowances",
    "Decision",
    "Memory",
    "Observation",
    "ScalingSpec",
    "WorkerDefaults",
    "decide",
    "queue_policy",
    "render_deployment",
    "render_disruption_budget",
    "spec_problems",
]
