"""The current the control pilot offers a session: one rule, in one place.

IEC 61851-1 Annex A: the pilot's PWM duty cycle tells the vehicle how many amperes it may draw
(6 A at the least; below that there is no PWM current to offer). The offer is the least of:

- the installation's limit (`[session] max_current`);
- a load manager's limit while one is set (the `CurrentLimited` event: a site controller, a
  building's meter, OCPP smart charging later; None lifts it);
- near the cost cap, `[session] taper_current` once the session's cost reaches `taper_at`
  percent of the authorized amount: the vehicle ramps down before the cap, so the stop at the
  cap breaks a smaller load and the last sample carries less energy past the price already
  shown. A raised cap (an approved increment) lifts it again at the next sample.
"""

from __future__ import annotations

from terminal.core.kiosk import Rules
from terminal.core.session import Session

MIN_OFFER_A = 6  # IEC 61851-1 Annex A: the least current a PWM duty cycle can offer


def near_cap(rules: Rules, session: Session) -> bool:
    """The session's cost has reached `taper_at_percent` of its authorized amount."""
    if not rules.taper_at_percent or session.authorized is None or session.meterage is None:
        return False
    cost = session.meterage.total()
    return cost.minor * 100 >= session.authorized.minor * rules.taper_at_percent


def offered_current(rules: Rules, limit_a: int | None, session: Session) -> int:
    """Amperes to offer `session` now (see the module docstring)."""
    current = rules.max_current_a
    if limit_a is not None:
        current = min(current, limit_a)
    if near_cap(rules, session):
        current = min(current, rules.taper_current_a)
    return max(current, MIN_OFFER_A)
