"""The local stand-in for Cloud Scheduler: a `watch.tick` per pipeline on its spec's schedule.

In the cloud a Cloud Scheduler job per pipeline publishes the same tick to the same topic.
"""

from __future__ import annotations

import signal
import threading
import time

import structlog

from mlops import runtime
from mlops.core.events import TickReason, WatchTick
from mlops.core.events.envelope import new_envelope
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings

log = structlog.get_logger("ticker")
LOOK_EVERY_S = 1.0


def run(bus, specs, stop: threading.Event) -> None:
    last_tick: dict[str, float] = {}
    while not stop.is_set():
        now = time.monotonic()
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
    run(runtime.event_bus(settings), runtime.spec_store(settings), stop)


if __name__ == "__main__":
    main()
