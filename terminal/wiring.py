"""The one function that turns the `[hardware]` section into device objects.

`backend = "sim"` builds the simulator (for a bench or a demo kiosk without hardware);
`backend = "pi"` builds the real drivers (nfcpy reader, Modbus meter and EVSE board, gpiozero
relay and inputs, display renderers, watchdog), each validated with errors naming the key.
"""

from __future__ import annotations

from hardware.clock import Clock
from terminal.config import Config
from terminal.errors import ConfigError
from terminal.shell.devices import Devices
from terminal.station import SimHardware


def build_devices(config: Config, clock: Clock) -> Devices:
    if config.hardware.backend == "sim":
        return SimHardware.build(clock).devices()
    raise ConfigError("hardware.backend", "the pi backend's wiring is not built yet")
