"""The background job that watches the fleet's CRL: a CRL past its nextUpdate refuses every
terminal, so the operator is warned a week ahead (`gateway.tls.crl_expiry_check`, which logs
`event=crl_expiring`, `crl_expired` or `crl_unusable`). The CRL itself is re-read whenever
the file changes, on the next connection or forwarded certificate."""

from __future__ import annotations

from datetime import timedelta

from gateway.jobs.runner import Job
from gateway.ledger import Ledger
from gateway.tls import Revocations, crl_expiry_check

CRL_WATCH_EVERY_S = 3600.0


class CrlWatch(Job):
    name = "crl-watch"

    def __init__(
        self, ledger: Ledger, revocations: Revocations, every_s: float = CRL_WATCH_EVERY_S
    ) -> None:
        super().__init__(ledger, every_s)
        self.revocations = revocations

    def work(self) -> timedelta | None:
        return crl_expiry_check(self.revocations)
