"""Helpers for tests that put real services' push endpoints behind the real Pub/Sub emulator."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from flask import Flask
from google.cloud import pubsub_v1
from werkzeug.serving import make_server

T = TypeVar("T")


def unique_project() -> str:
    """A project id of its own per test: the shared emulator keeps each project's resources apart."""
    return f"test-{uuid.uuid4().hex[:10]}"


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve a Flask app on a free loopback port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        vertex = app.config.get("VERTEX_LOCAL")
        if vertex is not None:  # the local Vertex server's serving containers are processes: stop them
            vertex.close()


def pull(project: str, subscription: str, wanted: int = 1, timeout: float = 30.0) -> list:
    """Pull (and ack) until `wanted` messages arrived or the timeout passed."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, subscription)
    received = []
    deadline = time.monotonic() + timeout
    while len(received) < wanted and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 100}, timeout=5)
        if response.received_messages:
            subscriber.acknowledge(request={"subscription": path,
                                            "ack_ids": [m.ack_id for m in response.received_messages]})
            received.extend(m.message for m in response.received_messages)
        else:
            time.sleep(0.1)
    subscriber.close()
    return received


def wait_for(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
