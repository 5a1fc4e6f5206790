"""conveyor_plant: the plant's state the workers leave in Redis (each machine's latest values,
configuration, SPC windows, alert de-duplication, the alert history and the live channels):
where it lives (``keys``) and how it is read (``reading``). The workers write it, the gateway
reads it; the queue library knows none of it."""

from conveyor_plant.reading import (
    MachineState,
    PlantState,
    machine_ids,
    machine_state,
    recent_alerts,
)

__all__ = ["MachineState", "PlantState", "machine_ids", "machine_state", "recent_alerts"]
