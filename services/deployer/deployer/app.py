"""deployer's HTTP entry point: Pub/Sub pushes `model.registered` here."""

from __future__ import annotations

from flask import Flask

from deployer.handler import Deployer
from mlops import runtime
from mlops.core.events import ModelRegistered
from mlops.core.log import configure_logging
from mlops.core.settings import CommonSettings, load_settings
from mlops.runtime.push import Route

SERVICE = "deployer"


def create_app() -> Flask:
    settings = load_settings(CommonSettings, SERVICE)
    configure_logging(settings.service, settings.log_level)
    deployer = Deployer(runtime.model_registry(settings), runtime.model_endpoint(settings),
                        runtime.spec_store(settings), runtime.blob_store(settings))
    return runtime.push_app(settings, {ModelRegistered.EVENT_TYPE: Route(deployer.handle)})
