"""JSON logs in Cloud Logging's structured format, one line per record on stdout.

Cloud Run turns each line into a LogEntry: `severity` and `message` are promoted, and
`logging.googleapis.com/trace` groups the lines of one request under its trace. Locally the same
lines land in each service's log file under the stack's data folder.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SEVERITY = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR", "critical": "CRITICAL"}
TRACE_KEY = "logging.googleapis.com/trace"


def _cloud_logging_fields(_: object, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict["severity"] = _SEVERITY.get(method, "DEFAULT")
    event_dict["message"] = event_dict.pop("event", "")
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and the standard library to one JSON line per record."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level, force=True)
    for noisy in ("urllib3", "google", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.processors.format_exc_info,
            _cloud_logging_fields,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def trace_from_header(header: str | None, project: str) -> str | None:
    """`X-Cloud-Trace-Context: TRACE/SPAN;o=1` -> `projects/P/traces/TRACE`, as Cloud Logging wants."""
    if not header:
        return None
    trace_id = header.split("/", 1)[0].strip()
    return f"projects/{project}/traces/{trace_id}" if trace_id else None


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
