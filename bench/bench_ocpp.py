"""OCPP figures, over a real WebSocket on loopback to the reference CSMS (every message
validated against the OCA schemas on both sides, as in production):

1. while charging with meter values every second (`tx_updated_interval = 1s`): how many
   messages a second the client sustains, against how fast the simulated kiosk produces them;
2. a day of queued transaction events (the CSMS unreachable for 24 simulated hours of
   back-to-back sessions, meter values every minute, the default), then the time from the
   CSMS coming back to the queue being empty, and its rate.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from hardware.sim.card_script import load_profiles
from launcher.csms import ReferenceCsms
from launcher.simulate import Simulation, parse_script
from terminal.config import Config, OcppConfig, load

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench"


def _config(tmp: Path, csms: ReferenceCsms, interval_ms: int) -> Config:
    config = load(ROOT / "deploy" / "terminal.toml")
    secret = tmp / "ocpp-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    ocpp = OcppConfig(
        url=csms.url,
        station_id=config.station.id,
        password_file=secret,
        tx_updated_interval_ms=interval_ms,
    )
    return replace(config, data_dir=tmp / "data", ocpp=ocpp)


def _run(sim: Simulation, script: str) -> None:
    for step in parse_script(script, set(load_profiles())):
        sim.run_step(step)


def charging_rate(minutes: int = 30) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        csms = ReferenceCsms(passwords={"KIOSK-0001": PASSWORD}).start()
        sim = Simulation(config=_config(tmp, csms, 1_000), data_dir=tmp / "sim")
        assert sim.ocpp is not None and sim.ocpp.wait_online(10)
        before = len(csms.messages())
        start = time.perf_counter()
        _run(sim, f"tap visa\nplug\nev charge\nwait {minutes}m\ntap visa\nwait 1m\n")
        produced = time.perf_counter() - start
        queued = sim.ocpp.queue.depth()
        assert sim.ocpp_drained(600)
        elapsed = time.perf_counter() - start
        sent = len(csms.messages()) - before
        sim.close()
        csms.stop()
    print(
        f"charging, meter values every 1 s: {sent} messages for {minutes} simulated minutes;"
        f" produced in {produced:.1f} s ({sent / produced:.0f}/s),"
        f" sent and answered in {elapsed:.1f} s: {sent / elapsed:.0f} messages/s sustained"
        f" ({queued} still queued when the simulation finished)"
    )


def day_drain() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        csms = ReferenceCsms(passwords={"KIOSK-0001": PASSWORD}).start()
        config = _config(tmp, csms, 60_000)
        config = replace(config, session=replace(config.session, sample_interval_ms=10_000))
        sim = Simulation(config=config, data_dir=tmp / "sim")
        assert sim.ocpp is not None and sim.ocpp.wait_online(10)
        csms.down()
        while sim.ocpp.online():
            time.sleep(0.01)
        # 24 h: sessions of 2 h 50 min with a 10 min gap, eight of them and a bit.
        session = "tap visa\nplug\nev charge\nwait 170m\nunplug\nwait 10m\n"
        _run(sim, session * 8)
        queued = sim.ocpp.queue.depth()
        start = time.perf_counter()
        csms.up()
        assert sim.ocpp_drained(1200)
        elapsed = time.perf_counter() - start
        sim.close()
        csms.stop()
    print(
        f"a day offline: {queued} queued messages (8 sessions, meter values every minute)"
        f" drained in {elapsed:.2f} s after the CSMS came back ({queued / elapsed:.0f}/s,"
        " reconnect back-off included)"
    )


def main() -> None:
    logging.disable(logging.INFO)
    charging_rate()
    day_drain()


if __name__ == "__main__":
    main()
