"""The local stand-in for Pub/Sub BigQuery subscriptions: every message on every topic -> `events`.

In the cloud each topic has a BigQuery subscription with `write_metadata` that writes these same
columns. Locally the emulator has no such subscriptions, so this process streams-pulls every
`<topic>--archive` subscription, writes rows in batches (Storage Write API appends, see
`Warehouse.insert_rows`), and acks a message only once its row is
written: a crash loses nothing (a redelivered message may be archived twice; readers dedupe on
`message_id`, as they must with at-least-once BigQuery subscriptions too).
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import structlog
from google.cloud.pubsub_v1.subscriber.message import Message
from google.cloud.pubsub_v1.types import FlowControl

from mlops import runtime
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.core.topology import ALL_TOPICS, EVENTS_TABLE, archive_subscription

log = structlog.get_logger("archiver")

FLUSH_EVERY_S = 0.2
# Rows per Storage Write API append: an append of 2,000 archive rows costs about what one of 500
# does, and the flow control lets 2,000 messages wait, so one append takes all of them.
MAX_BATCH = 2000


@dataclass
class _Pending:
    row: dict
    message: Message


class Archiver:
    def __init__(self, project: str, warehouse, subscriber: pubsub_v1.SubscriberClient | None = None):
        self.project = project
        self._warehouse = warehouse
        self._subscriber = subscriber or pubsub_v1.SubscriberClient()
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._futures: list[Any] = []
        self.archived = 0

    def _on_message(self, subscription: str):
        def callback(message: Message) -> None:
            row = {
                "subscription_name": subscription,
                "message_id": message.message_id,
                "publish_time": message.publish_time.isoformat(),
                "data": message.data.decode("utf-8", errors="replace"),
                "attributes": json.dumps(dict(message.attributes), sort_keys=True),
            }
            with self._lock:
                self._pending.append(_Pending(row, message))
        return callback

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if not batch:
            return 0
        try:
            self._warehouse.insert_rows(EVENTS_TABLE, [p.row for p in batch])
        except Exception as error:  # noqa: BLE001 - nack: Pub/Sub redelivers, nothing lost
            log.error("archive write failed; messages will be redelivered", error=repr(error), count=len(batch))
            for pending in batch:
                pending.message.nack()
            return 0
        for pending in batch:
            pending.message.ack()
        self.archived += len(batch)
        return len(batch)

    def start(self) -> None:
        flow = FlowControl(max_messages=2000)
        for topic in ALL_TOPICS:
            name = archive_subscription(topic)
            path = self._subscriber.subscription_path(self.project, name)
            self._futures.append(self._subscriber.subscribe(path, self._on_message(name), flow_control=flow))
        log.info("archiving", subscriptions=len(self._futures))

    def run_forever(self) -> None:
        self.start()
        while not self._stop.is_set():
            if self.flush() < MAX_BATCH:
                self._stop.wait(FLUSH_EVERY_S)
        for future in self._futures:
            future.cancel()
        while self.flush():
            pass

    def stop(self, *_: object) -> None:
        self._stop.set()


def main() -> None:
    settings = load_settings(CommonSettings, "archiver")
    configure_logging("archiver", settings.log_level)
    archiver = Archiver(settings.project, runtime.warehouse(settings))
    signal.signal(signal.SIGTERM, archiver.stop)
    signal.signal(signal.SIGINT, archiver.stop)
    archiver.run_forever()


if __name__ == "__main__":
    main()
