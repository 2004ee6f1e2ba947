"""The state diagram, generated from the machine's transition table (Mermaid)."""

from __future__ import annotations

from terminal.core.machine import IGNORED, TRANSITIONS

# Where each handler can lead, read off the handlers (the table says which event is handled
# where; this says which phases a handled event may move to).
_TARGETS: dict[str, tuple[str, ...]] = {
    "_powered_up": ("Idle", "Unavailable"),
    "_start_session": ("Authorizing",),
    "_answered": ("AwaitingVehicle", "Charging", "Idle", "Unavailable"),
    "_authorizing_timer": ("Idle", "Unavailable"),
    "_awaiting_timer": ("Idle", "Unavailable"),
    "_vehicle_awaiting": ("Charging", "Idle", "Unavailable"),
    "_vehicle_authorizing": ("Idle", "Unavailable"),
    "_vehicle_charging": ("Suspended", "Finishing"),
    "_vehicle_suspended": ("Charging", "Finishing"),
    "_tap_in_session": ("Finishing", "Idle"),
    "_sample_charging": ("Finishing",),
    "_suspended_timer": ("Finishing",),
    "_sample_finishing": ("Receipt",),
    "_meter_failed_finishing": ("Receipt",),
    "_meter_failed": ("Receipt", "Finishing", "Unavailable"),
    "_fault_raised": ("Finishing", "Receipt", "Unavailable"),
    "_checked": ("Finishing", "Receipt", "Unavailable"),
    "_receipt_timer": ("Idle", "Unavailable"),
    "_fault_cleared": ("Idle",),
    "_out_of_service": ("Idle", "Unavailable"),
    "_vehicle_at_rest": ("Idle", "Unavailable"),
    "_sample_at_rest": ("Unavailable", "Idle"),
}


def mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> Booting"]
    seen: set[tuple[str, str, str]] = set()
    for (phase, event), handler in sorted(
        TRANSITIONS.items(), key=lambda kv: (kv[0][0].__name__, kv[0][1].__name__)
    ):
        for target in _TARGETS.get(handler.__name__, ()):
            edge = (phase.__name__, target, event.__name__)
            if edge[0] == edge[1] or edge in seen:
                continue
            seen.add(edge)
            lines.append(f"    {edge[0]} --> {edge[1]}: {edge[2]}")
    lines.append(f"    %% {len(TRANSITIONS)} handled pairs, {len(IGNORED)} ignored by name")
    return "\n".join(lines)
