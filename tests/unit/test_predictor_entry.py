"""The serving process's stop (`python -m predictor`): requests under way finish and are answered,
requests arriving meanwhile get a JSON 503, and only then are the predictions flushed."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from predictor.__main__ import InFlight

ROOT = Path(__file__).resolve().parents[2]


class Held:
    """A WSGI app whose requests wait until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.entered.set()
        self.release.wait(10)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"ok": true}']


def call(app: InFlight) -> tuple[str, bytes]:
    status: list[str] = []
    answer = app({}, lambda s, headers: status.append(s))
    body = b"".join(answer)
    getattr(answer, "close", lambda: None)()  # as the server does once the answer is written
    return status[0], body


def test_a_stop_waits_for_the_request_under_way_and_refuses_new_ones():
    held = Held()
    app = InFlight(held)
    answers: list[tuple[str, bytes]] = []
    request = threading.Thread(target=lambda: answers.append(call(app)))
    request.start()
    assert held.entered.wait(5)
    left: list[int] = []
    stopping = threading.Thread(target=lambda: left.append(app.drain(timeout=30)))
    stopping.start()
    while not app.draining:  # the stop has begun
        threading.Event().wait(0.01)
    status, body = call(app)  # a request arriving meanwhile
    assert status == "503 Service Unavailable" and "stopping" in json.loads(body)["error"]
    assert not left  # still waiting for the one under way
    held.release.set()
    stopping.join(10)
    request.join(10)
    assert left == [0] and answers == [("200 OK", b'{"ok": true}')]


def test_a_stop_gives_up_on_a_request_that_does_not_finish():
    held = Held()
    app = InFlight(held)
    request = threading.Thread(target=lambda: call(app), daemon=True)
    request.start()
    assert held.entered.wait(5)
    assert app.drain(timeout=0.05) == 1
    held.release.set()
    request.join(10)


def test_an_app_that_raises_is_not_counted_as_running():
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    app = InFlight(broken)
    try:
        app({}, lambda *_: None)
    except RuntimeError:
        pass
    assert app.drain(timeout=0) == 0


def test_the_image_and_the_local_stand_in_run_the_same_entry_point():
    from mlops.stack.vertex_local import LocalImages, predictor_argv

    dockerfile = (ROOT / "services" / "predictor" / "Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    image_argv = json.loads(cmd[len("CMD "):])
    local_argv, folder = LocalImages().command("us-docker.pkg.dev/p/r/predictor:1", 8080)
    assert (local_argv, folder) == predictor_argv()
    assert image_argv[1:] == ["-m", "predictor"] and local_argv[1:3] == image_argv[1:]
    assert "WORKDIR /app/services/predictor" in dockerfile and folder == ROOT / "services" / "predictor"
