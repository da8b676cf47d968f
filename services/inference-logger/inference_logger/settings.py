"""The inference-logger's settings: the common ones, and how far back a request id counts as logged."""

from __future__ import annotations

from pydantic import Field

from mlops.core.settings import CommonSettings


class InferenceLoggerSettings(CommonSettings):
    dedupe_horizon_hours: float = Field(
        24.0, gt=0, description="How long before a batch's earliest prediction the presence check looks for its "
                                "request ids: a redelivered or re-published batch is always found (its rows keep "
                                "their times); a client's retry with the same request id is found within it.")
