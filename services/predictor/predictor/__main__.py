"""`python -m predictor`: the serving container's entry point, one process.

The image runs it (services/predictor/Dockerfile) and so does the local Vertex AI stand-in
(`mlops.stack.vertex_local.LocalImages`), with Vertex's environment: `AIP_HTTP_PORT` and the rest
(`predictor.settings`). One process serves with threads (waitress): a Vertex AI serving container
holds one model and Vertex restarts a container that dies, so gunicorn's master process, which
restarts workers, only cost each container ~25 MiB and a second copy of the interpreter.

- Start: settings, then the model loaded, verified and warmed up (`predictor.app.start`), and only
  then the port opens, so the health route answers once the model is loaded. A model that cannot be
  served stops the process with one line on stderr and exit code 4 (`predictor.app.refuse_to_start`).
- Stop (SIGTERM, as Vertex AI and the stand-in stop a container; SIGINT too): no new connections,
  requests under way finish and are answered (a request arriving meanwhile gets a JSON 503 with
  Retry-After), then every waiting prediction is published (`PredictionBatcher.close`), then exit 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from waitress.server import create_server

# The app (and what it imports) is imported in main(), once NOT_IN_IMAGE is refused.
SERVICE = "predictor"

# Longest a stop waits for requests under way: a durable-mode request waits up to
# MLOPS_LOG_DURABLE_TIMEOUT_S (10 s) for its publish; Kubernetes, under Vertex AI, kills 30 s after SIGTERM.
DRAIN_TIMEOUT_S = 15.0
# Bodies past MLOPS_MAX_BODY_BYTES get the app's JSON 413 naming the setting; only bodies past this many
# bytes (which the server would otherwise spool to disk before the app sees them) get the server's own 413.
SERVER_MAX_BODY_BYTES = 64 * 1024 * 1024
# As many open connections as gunicorn's threaded worker took (its worker_connections).
CONNECTION_LIMIT = 1000
# Installed where the predictor runs locally (the developer's environment) but not in its image
# (requirements.txt), and imported by libraries whenever they can: xgboost imports scikit-learn for its
# scikit-learn API (seconds and ~100 MiB of every tree model's serving process), structlog imports rich
# for its console renderer; serving uses neither. Refused here as the image refuses them, so a local
# serving process imports what the image can, and no more.
NOT_IN_IMAGE = ("sklearn", "rich")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class InFlight:
    """WSGI middleware counting the requests under way, so that a stop can wait for them; once
    draining, new requests are answered 503 without reaching the app (nothing answered after the
    last predictions are published)."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._idle = threading.Condition()
        self._count = 0
        self._draining = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._idle:
            refuse = self._draining
            if not refuse:
                self._count += 1
        if refuse:
            body = json.dumps({"error": "this serving container is stopping; retry", "status": 503}).encode()
            start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                                       ("Content-Length", str(len(body))), ("Retry-After", "1")])
            return [body]
        try:
            answer = self._app(environ, start_response)
        except BaseException:
            self._done()
            raise
        return _Closing(answer, self._done)

    def _done(self) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self, timeout: float) -> int:
        """Refuse new requests, wait up to `timeout` for those under way; how many are still running."""
        with self._idle:
            self._draining = True
            self._idle.wait_for(lambda: self._count == 0, timeout)
            return self._count


class _Closing:
    """The app's answer, with `done` called once the server has written it and closed it (PEP 3333)."""

    def __init__(self, answer: Iterable[bytes], done: Callable[[], None]) -> None:
        self._answer = answer
        self._done = done

    def __iter__(self) -> Any:
        return iter(self._answer)

    def close(self) -> None:
        try:
            close = getattr(self._answer, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m predictor", description="Serve the model version in "
                                     "AIP_STORAGE_URI on AIP_HTTP_PORT (a Vertex AI custom serving container).")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface, as a "
                        "container must; the local stand-in passes 127.0.0.1)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for name in NOT_IN_IMAGE:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: `import name` raises ImportError
    from mlops.core.log import get_logger
    from predictor.app import refuse_to_start, start

    log = get_logger(SERVICE)
    app, batcher, settings = start()  # SystemExit(4) and one stderr line when the model cannot be served
    if stop.is_set():  # stopped while loading: nothing was served
        batcher.close()
        return 0
    requests = InFlight(app)
    try:
        # poll(), not select(): select() cannot watch descriptors numbered 1024 or more, which CONNECTION_LIMIT
        # connections and the process's other files can reach.
        server = create_server(requests, host=args.host, port=settings.aip_http_port,
                               threads=settings.serving_threads, connection_limit=CONNECTION_LIMIT,
                               asyncore_use_poll=True, ident=SERVICE,
                               max_request_body_size=max(SERVER_MAX_BODY_BYTES, 2 * settings.max_body_bytes))
    except OSError as error:  # the port is taken, or the address is not this machine's
        refuse_to_start(f"predictor cannot start: cannot listen on {args.host}:{settings.aip_http_port}: {error}")
    # The server's loop runs beside the main thread, which waits for a signal: the loop keeps writing
    # answers while a stop drains the requests under way.
    loop = threading.Thread(target=server.run, name="http", daemon=True)
    loop.start()
    log.info("listening", host=args.host, port=settings.aip_http_port, threads=settings.serving_threads)
    while not stop.wait(1.0):
        if not loop.is_alive():
            log.error("the HTTP server stopped by itself; exiting")
            batcher.close()
            return 1
    log.info("stopping: finishing requests under way, then publishing the predictions waiting",
             pending=batcher.pending)
    server.accepting = False  # no new connections (the listening socket is left out of the loop's select)
    server.pull_trigger()
    unfinished = requests.drain(DRAIN_TIMEOUT_S)
    if unfinished:
        log.warning("requests still running at exit", count=unfinished)
    batcher.close()
    log.info("stopped", logged=batcher.published)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
