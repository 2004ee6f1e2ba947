"""Take a changed processor configuration file without a restart.

Every worker holds its own adapters and rules, so this job runs in every worker (no lease):
each round it looks at the file's identity (inode, size, modification time) and, when it
changed and then stayed the same for one round (not half written), reads it again. A file
that reads well replaces the rules and adapters for the next new hold
(`Processors.reconfigure`); holds already placed finish where they started, because each later
step goes to the processor and account recorded on its authorization. A file that does not
read well is refused with one log line naming the key, and the running configuration stays.

A file that reads well but drops an account still holding money, as the database shows it at
that round, is refused the same way (key `processors`), by the check the start-up runs
(`check_money_kept`, called by `server.check_routing`): an open authorization there, or change
owed to a payer from it. Without it the reload would be taken and the next start of any worker
would be refused or could not reach the account. A refused file is read again once it changes
(write it again after those authorizations are settled), as a malformed one is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from gateway.jobs.runner import Job
from gateway.ledger import Ledger, payouts
from gateway.processors.registry import Processors, UnknownProcessor
from gateway.processors.routing import Routing
from terminal.errors import ConfigError

log = logging.getLogger("ev_gateway.jobs.routing")

RELOAD_EVERY_S = 5.0

Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def check_money_kept(ledger: Ledger, routing: Routing) -> None:
    """Refuse (a `ConfigError` on key `processors`) a configuration that drops an account
    still holding money in `ledger` now: open authorizations (held, being held, or with a step
    in flight), whose later steps must go where they started, and change owed to a payer,
    which is paid back from the account that took it (`payouts`). Names the account and how
    many authorizations, or which one owes the change; nothing is written."""
    configured = {(a.name, a.account) for a in routing.adapters}
    for (name, account), count in sorted(ledger.accounts_in_use().items()):
        if (name, account) not in configured:
            raise ConfigError(
                "processors",
                f"{count} open authorization(s) are held at {name}/{account}: keep its "
                "[[processors]] table until they are settled",
            )
    for owed in payouts.change_owed(ledger.engine):
        if (owed["processor"], owed["merchant_account"]) not in configured:
            raise ConfigError(
                "processors",
                f"change is owed to a payer of {owed['authorization_id']} at "
                f"{owed['processor']}/{owed['merchant_account']}: keep its [[processors]] "
                "table until it is paid back",
            )


class RoutingReload(Job):
    """Reload `path` into `registry` when it changes."""

    name = "routing_reload"

    def __init__(
        self,
        ledger: Ledger,
        path: Path,
        registry: Processors,
        load: Callable[[Path], Routing],
        every_s: float = RELOAD_EVERY_S,
    ) -> None:
        super().__init__(ledger, every_s)
        self.path = path
        self._registry = registry
        self._load = load
        self._taken = _stamp(path)  # the file as last read
        self._seen = self._taken  # the file as last looked at

    def round(self) -> None:
        self.run_once()  # each worker's own registry: no lease

    def work(self) -> bool:
        """Whether a new configuration was taken."""
        stamp = _stamp(self.path)
        if stamp == self._taken:
            return False
        if stamp != self._seen:
            # Changed since the last look: read it once it has stayed the same for a round,
            # not while an editor is still writing it.
            self._seen = stamp
            return False
        try:
            routing = self._load(self.path)
            # The database as it is now; an error reading it leaves the file to be read again
            # next round (the runner logs it), not taken nor refused.
            check_money_kept(self.ledger, routing)
            self._registry.reconfigure(routing.adapters, routing.routes, routing.sites)
        except ConfigError as exc:
            self._taken = stamp
            log.error(
                "event=processors_config_refused file=%s key=%s problem=%s",
                self.path,
                exc.key,
                exc.problem,
            )
            return False
        except UnknownProcessor as exc:
            self._taken = stamp
            log.error("event=processors_config_refused file=%s problem=%s", self.path, exc)
            return False
        self._taken = stamp
        log.info(
            "event=processors_config_loaded file=%s adapters=%d routes=%d",
            self.path,
            len(routing.adapters),
            len(routing.routes),
        )
        return True
