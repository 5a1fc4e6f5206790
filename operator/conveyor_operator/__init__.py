"""conveyor_operator: MessageQueue resources -> worker Deployments sized to the queue's backlog.

So far: the scaling decision (``scaling``). The kopf handlers come next.
"""

from conveyor_operator.scaling import Decision, Memory, Observation, ScalingSpec, decide

__all__ = ["Decision", "Memory", "Observation", "ScalingSpec", "decide"]
