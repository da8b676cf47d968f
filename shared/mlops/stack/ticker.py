"""The local stand-in for Cloud Scheduler: a `watch.tick` per pipeline on its spec's schedule, and
heartbeats (`watch.tick` for every pipeline, reason `heartbeat`) every `MLOPS_HEARTBEAT_S` seconds
while a deploy is open, for the deployer to finish it (a deploy outlives the push that started it;
a rollback or promote that must deploy its version again too). The monitor's canary judge also looks
on heartbeats; its checks and the data-watcher ignore them.

In the cloud a Cloud Scheduler job per pipeline publishes the same ticks to the same topic, and one
more job the heartbeat, every minute. Locally heartbeats are sent only while the deployer has a
deploy open (its intents in the bucket), so an idle stack's archive stays quiet.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import structlog

from mlops import runtime
from mlops.core.events import TickReason, WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.ports.intents import IN_FLIGHT, IntentLog

log = structlog.get_logger("ticker")
LOOK_EVERY_S = 1.0
HEARTBEAT_ENV = "MLOPS_HEARTBEAT_S"


def deploys_open(intents: IntentLog) -> bool:
    return any(i.call == "deploy" and i.state == IN_FLIGHT for i in intents.open())


def run(bus, specs, stop: threading.Event, intents: IntentLog | None = None, heartbeat_s: float = 2.0) -> None:
    last_tick: dict[str, float] = {}
    last_beat = 0.0
    while not stop.is_set():
        now = time.monotonic()
        try:
            if intents is not None and now - last_beat >= heartbeat_s and deploys_open(intents):
                beat = WatchTick(pipeline=None, reason=TickReason.HEARTBEAT)
                bus.publish(beat, new_envelope(beat, "ticker")).result(timeout=30)
                last_beat = now
        except Exception as error:  # noqa: BLE001 - the next look sends it
            log.warning("heartbeat failed", error=repr(error))
        try:
            for name in specs.names():
                every = specs.get(name).retrain.schedule_seconds
                if every and now - last_tick.get(name, 0.0) >= every:
                    tick = WatchTick(pipeline=name, reason=TickReason.SCHEDULE)
                    bus.publish(tick, new_envelope(tick, "ticker")).result(timeout=30)
                    last_tick[name] = now
        except Exception as error:  # noqa: BLE001 - a missed tick is retried next second
            log.warning("tick failed", error=repr(error))
        stop.wait(LOOK_EVERY_S)


def main() -> None:
    settings = load_settings(CommonSettings, "ticker")
    configure_logging("ticker", settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(runtime.event_bus(settings), runtime.spec_store(settings), stop,
        intents=IntentLog(runtime.blob_store(settings), "deployer"),
        heartbeat_s=float(os.environ.get(HEARTBEAT_ENV, "2")))


if __name__ == "__main__":
    main()
