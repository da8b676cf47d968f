"""Configuration: every environment variable once, typed, with a default and a doc line.

Settings are read once at start-up into a frozen object; a missing or malformed variable stops the
process before it serves a request. Variables are `MLOPS_<NAME>`; a service may override any of them
with `<SERVICE>_<NAME>` (e.g. `TRAINER_LOG_LEVEL`), so one environment file can serve a whole stack.
"""

from __future__ import annotations

import os
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops.core.errors import validation_problems

PREFIX = "MLOPS_"
# Where Google publishes the keys that sign its OIDC tokens, as {key id: PEM certificate}.
GOOGLE_OAUTH2_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class SettingsError(RuntimeError):
    """Start-up refused: lists every missing or malformed variable."""


class CommonSettings(BaseSettings):
    """What every service needs: where the cloud (or the local stack) is."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    service: str = Field("mlops", description="This service's name; Cloud Run's K_SERVICE wins when set.")
    project: str = Field(description="Google Cloud project id (locally any valid id, e.g. mlops-local).")
    location: str = Field("us-central1", description="Region for Vertex AI and the bucket.")
    dataset: str = Field("mlops", description="BigQuery dataset of sources, predictions, labels, events.")
    snapshot_dataset: str = Field("mlops_snapshots", description="BigQuery dataset of immutable training snapshots.")
    bigquery_append_format: Literal["arrow", "proto"] = Field(
        "arrow", description="How Storage Write API appends encode rows: Arrow record batches, or protocol "
                             "buffers where a project is refused Arrow appends.")
    bucket: str = Field(description="Cloud Storage bucket for artifacts and pipeline specs.")
    dead_letter_topic: str = Field("mlops.dead-letter", description="Topic that poison messages are parked on.")
    vertex_endpoint: str | None = Field(
        None, description="Vertex AI API endpoint; unset means the real service, a URL means the local stand-in."
    )
    # Set by the local stack (and `gcloud beta emulators ...`) under their usual names; unset in the cloud.
    pubsub_emulator_host: str | None = Field(
        None, description="Pub/Sub emulator (host:port); PUBSUB_EMULATOR_HOST.",
        validation_alias=AliasChoices("pubsub_emulator_host", "PUBSUB_EMULATOR_HOST"))
    bigquery_emulator_host: str | None = Field(
        None, description="BigQuery emulator (http://host:port); BIGQUERY_EMULATOR_HOST.",
        validation_alias=AliasChoices("bigquery_emulator_host", "BIGQUERY_EMULATOR_HOST"))
    bigquery_storage_emulator_host: str | None = Field(
        None, description="BigQuery emulator's gRPC port for the Storage Read/Write APIs (host:port); "
        "BIGQUERY_STORAGE_EMULATOR_HOST.",
        validation_alias=AliasChoices("bigquery_storage_emulator_host", "BIGQUERY_STORAGE_EMULATOR_HOST"))
    storage_emulator_host: str | None = Field(
        None, description="Cloud Storage emulator (http://host:port); STORAGE_EMULATOR_HOST.",
        validation_alias=AliasChoices("storage_emulator_host", "STORAGE_EMULATOR_HOST"))
    code_version: str = Field("dev", description="Git commit or image tag of this build, recorded in lineage.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level logged.")
    metrics_sink: Literal["local", "cloud-monitoring"] = Field(
        "local", description="Where stage metrics go: JSON log lines locally, Cloud Monitoring in the cloud."
    )
    push_audience: str | None = Field(
        None, description="Audience of the OIDC token Pub/Sub attaches to each push (the subscription's "
                          "oidc_token.audience); set, /push refuses a request without a valid token (401/403). "
                          "Unset (the local stack): no token is checked.")
    push_service_account: str | None = Field(
        None, validate_default=True,
        description="The service account Pub/Sub signs push tokens as (oidc_token.service_account_email); "
                    "required with MLOPS_PUSH_AUDIENCE.")
    push_certs_url: str = Field(
        GOOGLE_OAUTH2_CERTS_URL, description="Where the push token's signing certificates are fetched "
                                             "({key id: PEM}); Google's by default.")

    @field_validator("push_service_account")
    @classmethod
    def _push_auth_is_whole(cls, account: str | None, info: ValidationInfo) -> str | None:
        # An audience alone would admit any Google identity that asks for a token with that audience.
        audience = info.data.get("push_audience")
        if audience and not account:
            raise ValueError("required when MLOPS_PUSH_AUDIENCE is set: the email of the account Pub/Sub "
                             "signs push tokens as")
        if account and not audience:
            raise ValueError("set without MLOPS_PUSH_AUDIENCE, so no push token would be checked: set both, "
                             "or neither")
        if account and "@" not in account:
            raise ValueError(f"{account!r} is not a service account email")
        return account


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], service: str, environ: dict[str, str] | None = None) -> S:
    """Read `cls` for `service` from the environment, or refuse to start with every problem listed."""
    environ = dict(os.environ if environ is None else environ)
    service_prefix = service.upper().replace("-", "_") + "_"
    values: dict[str, str] = {"service": service}
    for name, info in cls.model_fields.items():
        # Platform-defined names (e.g. Vertex AI's AIP_PREDICT_ROUTE) come in as alias choices.
        choices = getattr(info.validation_alias, "choices", [])
        platform = [a.upper() for a in choices if isinstance(a, str) and a != name]
        for key in (*platform, PREFIX + name.upper(), service_prefix + name.upper()):  # later wins
            if key in environ:
                values[name] = environ[key]
    if environ.get("K_SERVICE"):  # Cloud Run names the service; that name is the truth there
        values["service"] = environ["K_SERVICE"]
    try:
        return cls.model_validate(values)
    except ValidationError as error:
        problems = validation_problems(error, prefix=PREFIX, upper=True)
        raise SettingsError(f"{service} cannot start: " + "; ".join(problems)) from None


def describe(cls: type[CommonSettings]) -> list[tuple[str, str, str]]:
    """(variable, default, doc) for each setting: the table in each service's README."""
    rows = []
    for name, info in cls.model_fields.items():
        default = "required" if info.is_required() else repr(info.default)
        rows.append((PREFIX + name.upper(), default, info.description or ""))
    return rows


class TrainingSettings(CommonSettings):
    """The trainer's and evaluator's: which backend trains and scores models."""

    trainer_backend: Literal["sklearn", "bqml"] = Field(
        "sklearn", description="sklearn trains in the service (default, runs anywhere); bqml runs CREATE MODEL in BigQuery."
    )
