"""Take a changed processor configuration file without a restart.

Every worker holds its own adapters and rules, so this job runs in every worker (no lease):
each round it looks at the file's identity (inode, size, modification time) and, when it
changed and then stayed the same for one round (not half written), reads it again. A file
that reads well replaces the rules and adapters for the next new hold
(`Processors.reconfigure`); holds already placed finish where they started, because each later
step goes to the processor and account recorded on its authorization. A file that does not
read well is refused with one log line naming the key, and the running configuration stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from gateway.jobs.runner import Job
from gateway.ledger import Ledger
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
        self._taken = stamp
        try:
            routing = self._load(self.path)
            self._registry.reconfigure(routing.adapters, routing.routes, routing.sites)
        except ConfigError as exc:
            log.error(
                "event=processors_config_refused file=%s key=%s problem=%s",
                self.path,
                exc.key,
                exc.problem,
            )
            return False
        except UnknownProcessor as exc:
            log.error("event=processors_config_refused file=%s problem=%s", self.path, exc)
            return False
        log.info(
            "event=processors_config_loaded file=%s adapters=%d routes=%d",
            self.path,
            len(routing.adapters),
            len(routing.routes),
        )
        return True
