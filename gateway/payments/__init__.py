"""The money steps on an authorization — hold, increment, capture, release — exactly once,
across any number of gateway workers and any crash.

Each step runs in three phases (Stripe's "atomic phases"):
1. **Claim** (one transaction): check the rules against the authorization's row, then set
   `op` on it with a compare-and-set that succeeds only if no other step is in flight and the
   status still allows this one. Two workers racing on one hold: one wins, the other is told
   `in_progress` (409, retryable) or finds the finished state.
2. **Call** the processor with the step's fixed processor key, outside any transaction.
3. **Record** (one transaction): the outcome, the money movement and the stored answer
   together, again conditional on the step's key.
A step whose answer was lost (a processor timeout, a killed worker) keeps `op` set. Whoever
finds it next — a retry of the request, another step on the hold, the reconciler — asks the
processor for the payment's status first and records what it says; only a step the processor
shows it never did is called again, with the same processor key.

A step already done is answered from the state: the same capture of a captured hold gets the
same answer, even after its idempotency key has expired.

`Payments` is the one object callers use; its parts, by phase: `hold` (placing a hold, the
claim of a new authorization), `steps` (the steps on a hold and their claim, phase 1),
`recording` (phases 2 and 3, and the resolution of an unfinished step), `learning` (what
the processor shows of an unfinished step), `core` (the claimed `Step` and its lock on the
row), `answers` (refusals and the answers read from the state).
"""

from gateway.payments.hold import Holds
from gateway.payments.steps import HoldSteps


class Payments(Holds, HoldSteps):
    """The money steps, over the ledger and the configured processors: the hold (`Holds`), the
    steps on it (`HoldSteps`), both finished and resolved by `Recording`."""
