"""deployer's HTTP entry point: Pub/Sub pushes `model.registered` (and ticks, to finish deploys) here."""

from __future__ import annotations

from flask import Flask
from pydantic import Field

from deployer.handler import Deployer
from deployer.traffic import Traffic
from mlops import runtime
from mlops.core.events import CanaryJudged, DeploymentRequested, ModelRegistered, WatchTick
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.ports.intents import IntentLog
from mlops.runtime.push import Route

SERVICE = "deployer"


class DeployerSettings(CommonSettings):
    serving_service_account: str | None = Field(
        None, description="Service account (email) the serving containers run as on the Vertex AI endpoint; "
                          "unset means Vertex's default identity (locally nothing checks it).",
    )
    deploy_deadline_s: float = Field(
        1800.0, gt=0, description="A deploy sent by a deployer that then crashed is waited for this long by the "
                                  "redelivery before it deploys again (longer than a Vertex AI deploy takes).",
    )


def create_app() -> Flask:
    settings = load_settings(DeployerSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    blobs = runtime.blob_store(settings)
    deployer = Deployer(runtime.model_registry(settings), runtime.model_endpoint(settings),
                        runtime.spec_store(settings), blobs, intents=IntentLog(blobs, SERVICE),
                        deploy_deadline_s=settings.deploy_deadline_s,
                        serving_service_account=settings.serving_service_account)
    # canary.judged and deployment.requested: traffic changes (deployer/traffic.py), through the same Deployer.
    traffic = Traffic(deployer, runtime.model_registry(settings), runtime.model_endpoint(settings),
                      runtime.spec_store(settings))
    return runtime.push_app(settings, {ModelRegistered.EVENT_TYPE: Route(traffic.guard_replay(deployer.handle)),
                                       CanaryJudged.EVENT_TYPE: Route(traffic.on_judged),
                                       DeploymentRequested.EVENT_TYPE: Route(traffic.on_requested),
                                       # the deploys started by earlier pushes are finished on ticks
                                       WatchTick.EVENT_TYPE: Route(deployer.handle_tick)})
