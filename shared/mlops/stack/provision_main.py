"""Provision the whole topology on the emulators from the environment, once, and exit.

    python -m mlops.stack.provision_main [--wait SECONDS]

This is the one-shot `provision` container of docker-compose.yml (`mlops up` calls the same
functions in-process). It reads what a service reads (MLOPS_PROJECT, MLOPS_BUCKET, MLOPS_DATASET, ...
and the emulator variables) plus one push endpoint per service:

    MLOPS_SERVICE_URL_<NAME>=http://data-watcher:8080   (NAME upper-cased, '-' -> '_')

A service without a URL gets no push subscription (its topics, schemas and archive subscriptions are
still created). It waits until each emulator answers (containers start in parallel), then creates
the bucket, the datasets and tables, and the schemas, topics and subscriptions; all of it idempotent,
so it can run on every `docker compose up`. It refuses to run without the three emulator variables:
in the cloud, Terraform (deploy/terraform) owns these resources, with OIDC-authenticated pushes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping

import structlog

from mlops import runtime
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.core.topology import SERVICES
from mlops.stack.processes import http_ok
from mlops.stack.provision import (
    provision_bigquery,
    provision_pubsub,
    provision_storage,
)

log = structlog.get_logger("provision")

URL_PREFIX = "MLOPS_SERVICE_URL_"
EMULATOR_VARIABLES = ("PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")


class ProvisionError(RuntimeError):
    pass


def url_variable(service: str) -> str:
    return URL_PREFIX + service.upper().replace("-", "_")


def service_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """Service name -> push endpoint base URL, for the services that have one in the environment."""
    return {s.name: environ[url_variable(s.name)] for s in SERVICES if environ.get(url_variable(s.name))}


def emulator_probes(environ: Mapping[str, str], project: str) -> dict[str, str]:
    """Emulator -> a URL that answers 2xx once it serves (the same probes as mlops.stack.emulators)."""
    missing = [name for name in EMULATOR_VARIABLES if not environ.get(name)]
    if missing:
        raise ProvisionError(
            f"{', '.join(missing)} not set: this provisions the emulators only; "
            "in the cloud, apply deploy/terraform instead")
    pubsub = environ["PUBSUB_EMULATOR_HOST"]  # host:port, no scheme
    bigquery = environ["BIGQUERY_EMULATOR_HOST"].rstrip("/")  # with its scheme
    storage = environ["STORAGE_EMULATOR_HOST"].rstrip("/")
    return {
        "pubsub": f"http://{pubsub}/",
        "bigquery": f"{bigquery}/bigquery/v2/projects/{project}/datasets",
        "storage": f"{storage}/storage/v1/b?project={project}",
    }


def wait_until_answering(probes: Mapping[str, str], timeout_s: float, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = dict(probes)
    while waiting:
        waiting = {name: url for name, url in waiting.items() if not http_ok(url)}
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise ProvisionError(f"no answer after {timeout_s:.0f} s from {sorted(waiting)}: {waiting}")
        time.sleep(every_s)


def provision_all(environ: Mapping[str, str], wait_s: float) -> dict[str, str]:
    settings = load_settings(CommonSettings, "provision", dict(environ))
    wait_until_answering(emulator_probes(environ, settings.project), wait_s)
    urls = service_urls(environ)
    provision_storage(runtime.blob_store(settings), settings.location)
    provision_bigquery(runtime.warehouse(settings))
    provision_pubsub(settings.project, urls)
    log.info("provisioned", project=settings.project, bucket=settings.bucket, push_to=urls)
    return urls


def main(argv: list[str] | None = None) -> int:
    import os


    parser = argparse.ArgumentParser(prog="python -m mlops.stack.provision_main", description=__doc__.split("\n")[0])
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the emulators (default 120)")
    args = parser.parse_args(argv)
    configure_logging("provision", os.environ.get("MLOPS_LOG_LEVEL", "INFO"))
    try:
        provision_all(os.environ, args.wait)
    except Exception as error:  # noqa: BLE001 - one line saying why, and a non-zero exit for compose
        log.error("provisioning failed", error=f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
