"""conveyor_operator: MessageQueue resources -> worker Deployments sized to the queue's backlog.

So far: the scaling decision (``scaling``) and the worker Deployment and queue policy rendered
from a MessageQueue (``rendering``). The kopf handlers come next.
"""

from conveyor_operator.rendering import WorkerDefaults, queue_policy, render_deployment
from conveyor_operator.scaling import Decision, Memory, Observation, ScalingSpec, decide

__all__ = [
    "Decision",
    "Memory",
    "Observation",
    "ScalingSpec",
    "WorkerDefaults",
    "decide",
    "queue_policy",
    "render_deployment",
]
