"""dashboard's HTTP entry point: the `mlops ui` pages as a Cloud Run service.

No local stack in the image: the settings (project, bucket, dataset, location) come from the
environment as for every service, and the reads go to Google's APIs with the service account's
credentials. Nothing is pushed here; the one write is a replay, published to the event's topic.
"""

from __future__ import annotations

from flask import Flask

from mlops.core.log import configure_logging
from mlops.ops.context import CliContext


def create_app() -> Flask:
    from mlops.ui import create_app as dashboard_app

    ctx = CliContext()
    configure_logging("dashboard", ctx.settings.log_level)  # a missing setting stops the start, not a request
    return dashboard_app(ctx)
