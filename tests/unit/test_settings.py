"""Settings: read once, typed, every problem listed at start-up, `<SERVICE>_X` over `MLOPS_X`."""

from __future__ import annotations

import pydantic
import pytest

from mlops.core.settings import (
    PREFIX,
    CommonSettings,
    SettingsError,
    TrainingSettings,
    describe,
    load_settings,
)
from mlops.core.topology import DEAD_LETTER_TOPIC

REQUIRED = {"MLOPS_PROJECT": "mlops-local", "MLOPS_BUCKET": "mlops-local-artifacts"}
# What Vertex AI and the registrar give every serving container (the predictor's settings).
SERVING = {"AIP_STORAGE_URI": "gs://vertex-copy/models/p/c1/", "MLOPS_PIPELINE": "p", "MLOPS_MODEL_VERSION": "1",
           "MLOPS_ARTIFACT_CHECKSUM": "sha256:" + "0" * 64}


def test_defaults_apply_when_only_the_required_variables_are_set():
    settings = load_settings(CommonSettings, "trainer", dict(REQUIRED))
    assert settings.project == "mlops-local"
    assert settings.bucket == "mlops-local-artifacts"
    assert settings.service == "trainer"
    assert settings.location == "us-central1"
    assert (settings.dataset, settings.snapshot_dataset) == ("mlops", "mlops_snapshots")
    assert settings.dead_letter_topic == DEAD_LETTER_TOPIC
    assert settings.vertex_endpoint is None
    assert (settings.log_level, settings.metrics_sink, settings.code_version) == ("INFO", "local", "dev")


def test_every_missing_required_variable_is_named_at_load():
    with pytest.raises(SettingsError) as caught:
        load_settings(CommonSettings, "trainer", {})
    message = str(caught.value)
    assert message.startswith("trainer cannot start")
    assert "MLOPS_PROJECT" in message and "MLOPS_BUCKET" in message


def test_malformed_values_are_listed_with_the_missing_ones():
    with pytest.raises(SettingsError) as caught:
        load_settings(TrainingSettings, "trainer", {"MLOPS_LOG_LEVEL": "LOUD", "MLOPS_TRAINER_BACKEND": "spark",
                                                    "MLOPS_METRICS_SINK": "stdout"})
    message = str(caught.value)
    for name in ("MLOPS_PROJECT", "MLOPS_BUCKET", "MLOPS_LOG_LEVEL", "MLOPS_TRAINER_BACKEND", "MLOPS_METRICS_SINK"):
        assert name in message


def test_service_variable_overrides_the_common_one():
    environ = REQUIRED | {"MLOPS_LOG_LEVEL": "INFO", "TRAINER_LOG_LEVEL": "DEBUG", "EVALUATOR_LOG_LEVEL": "ERROR"}
    assert load_settings(CommonSettings, "trainer", environ).log_level == "DEBUG"
    assert load_settings(CommonSettings, "evaluator", environ).log_level == "ERROR"
    assert load_settings(CommonSettings, "registrar", environ).log_level == "INFO"


def test_hyphenated_service_names_use_underscores_in_their_prefix():
    environ = REQUIRED | {"DATA_WATCHER_DATASET": "watched", "MLOPS_DATASET": "common"}
    assert load_settings(CommonSettings, "data-watcher", environ).dataset == "watched"


def test_a_service_variable_can_supply_a_required_setting():
    environ = {"TRAINER_PROJECT": "p-trainer", "MLOPS_BUCKET": "b"}
    assert load_settings(CommonSettings, "trainer", environ).project == "p-trainer"


def test_cloud_runs_service_name_is_used():
    assert load_settings(CommonSettings, "trainer", REQUIRED | {"K_SERVICE": "trainer-prod"}).service == "trainer-prod"


def test_cloud_runs_service_name_wins_over_mlops_service():
    environ = REQUIRED | {"K_SERVICE": "trainer-prod", "MLOPS_SERVICE": "from-env-file"}
    assert load_settings(CommonSettings, "trainer", environ).service == "trainer-prod"


def test_settings_read_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("MLOPS_PROJECT", "from-process")
    monkeypatch.setenv("MLOPS_BUCKET", "b")
    assert load_settings(CommonSettings, "trainer").project == "from-process"


def test_the_environment_is_isolated_between_tests():
    """The autouse fixture removed whatever MLOPS_* the previous test or the shell set."""
    with pytest.raises(SettingsError):
        load_settings(CommonSettings, "trainer")


def test_unrelated_variables_are_ignored():
    environ = REQUIRED | {"MLOPS_NOT_A_SETTING": "x", "PROJECT": "bare-name", "BUCKET": "bare"}
    settings = load_settings(CommonSettings, "trainer", environ)
    assert (settings.project, settings.bucket) == ("mlops-local", "mlops-local-artifacts")


def test_settings_are_frozen():
    settings = load_settings(CommonSettings, "trainer", dict(REQUIRED))
    with pytest.raises(pydantic.ValidationError):
        settings.project = "other"  # type: ignore[misc]


def test_typed_values_are_converted():
    from predictor.settings import PredictorSettings

    settings = load_settings(PredictorSettings, "predictor",
                             REQUIRED | SERVING | {"MLOPS_LOG_INTERVAL_S": "0.25", "PREDICTOR_LOG_BATCH": "64"})
    assert settings.log_interval_s == 0.25 and settings.log_batch == 64
    with pytest.raises(SettingsError, match="MLOPS_LOG_BATCH"):
        load_settings(PredictorSettings, "predictor", REQUIRED | SERVING | {"MLOPS_LOG_BATCH": "0"})


def test_platform_variables_are_read():
    from predictor.settings import PredictorSettings

    environ = REQUIRED | SERVING | {"AIP_PREDICT_ROUTE": "/v1/models/m:predict", "AIP_HEALTH_ROUTE": "/health",
                                    "AIP_DEPLOYED_MODEL_ID": "123"}
    settings = load_settings(PredictorSettings, "predictor", environ)
    assert (settings.aip_predict_route, settings.aip_health_route) == ("/v1/models/m:predict", "/health")
    assert (settings.aip_storage_uri, settings.aip_deployed_model_id) == ("gs://vertex-copy/models/p/c1/", "123")


def test_a_serving_container_without_a_gs_folder_does_not_start():
    from predictor.settings import PredictorSettings

    with pytest.raises(SettingsError, match="AIP_STORAGE_URI"):
        load_settings(PredictorSettings, "predictor", REQUIRED | SERVING | {"AIP_STORAGE_URI": "/tmp/model"})


def test_platform_settings_have_defaults_and_can_be_set_the_usual_way():
    from predictor.settings import PredictorSettings

    assert load_settings(PredictorSettings, "predictor", REQUIRED | SERVING).aip_predict_route == "/predict"
    environ = REQUIRED | SERVING | {"MLOPS_AIP_HEALTH_ROUTE": "/h", "PREDICTOR_AIP_PREDICT_ROUTE": "/mine"}
    settings = load_settings(PredictorSettings, "predictor", environ)
    assert (settings.aip_predict_route, settings.aip_health_route) == ("/mine", "/h")


@pytest.mark.parametrize("cls", [CommonSettings, TrainingSettings], ids=lambda c: c.__name__)
def test_describe_lists_every_variable_with_default_and_doc(cls):
    rows = describe(cls)
    assert [name for name, _, _ in rows] == [PREFIX + field.upper() for field in cls.model_fields]
    by_name = {name: (default, doc) for name, default, doc in rows}
    assert by_name["MLOPS_PROJECT"][0] == "required" and by_name["MLOPS_BUCKET"][0] == "required"
    assert by_name["MLOPS_LOCATION"][0] == "'us-central1'"
    assert by_name["MLOPS_VERTEX_ENDPOINT"][0] == "None"
    assert all(doc for _, doc in by_name.values()), "every setting needs a doc line"


def test_describe_includes_a_services_own_settings():
    from predictor.settings import PredictorSettings

    names = {name for name, _, _ in describe(PredictorSettings)}
    assert {"MLOPS_AIP_STORAGE_URI", "MLOPS_AIP_PREDICT_ROUTE", "MLOPS_LOG_BATCH", "MLOPS_PROJECT"} <= names


def test_training_settings_pick_the_backend():
    assert load_settings(TrainingSettings, "trainer", dict(REQUIRED)).trainer_backend == "sklearn"
    environ = REQUIRED | {"TRAINER_TRAINER_BACKEND": "bqml"}
    assert load_settings(TrainingSettings, "trainer", environ).trainer_backend == "bqml"
    assert load_settings(TrainingSettings, "evaluator", environ).trainer_backend == "sklearn"


def test_settings_error_is_a_startup_failure_not_a_value_error():
    assert issubclass(SettingsError, RuntimeError)
