"""Push authentication on a real service app (the inference-logger's `create_app()`, configured
through its environment) behind the real Pub/Sub emulator, with tokens signed by a local key whose
certificate is served locally in the format of Google's v1 certs endpoint."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests
from google.cloud import pubsub_v1

from mlops.core.events import PredictionMade, encode
from mlops.core.topology import DEAD_LETTER_TOPIC, DeliveryPolicy, archive_subscription, push_subscription
from mlops.stack.provision import provision_pubsub
from tests.fixtures.oidc import AUDIENCE, PUSH_ACCOUNT, CertsServer, SigningKey, serving_certs
from tests.integration.harness import pull, serving, unique_project

pytestmark = pytest.mark.integration

SERVICE = "inference-logger"
FAST_RETRIES = DeliveryPolicy(min_backoff_s=0, max_backoff_s=1, max_delivery_attempts=5, ack_deadline_s=10)
# Fits the topic's schema but carries no envelope beyond its type: once past authentication, the
# service dead-letters it itself, which shows the request was read (and BigQuery is never reached).
POISON_ATTRIBUTES = {"ce-type": PredictionMade.EVENT_TYPE}


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return SigningKey.generate("google-key-1")


@pytest.fixture
def certs(google_key: SigningKey) -> Iterator[CertsServer]:
    with serving_certs(google_key) as served:
        yield served


@pytest.fixture
def service_url(emulator_env, certs, monkeypatch) -> Iterator[tuple[str, str]]:
    from inference_logger.app import create_app

    project = unique_project()
    for key, value in {"MLOPS_PROJECT": project, "MLOPS_BUCKET": "push-auth-test", "MLOPS_PUSH_AUDIENCE": AUDIENCE,
                       "MLOPS_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT, "MLOPS_PUSH_CERTS_URL": certs.url}.items():
        monkeypatch.setenv(key, value)
    with serving(create_app()) as url:
        provision_pubsub(project, {SERVICE: url}, FAST_RETRIES)
        yield project, url


def push_request(url: str, project: str, token: str | None) -> requests.Response:
    body = {"message": {"data": base64.b64encode(encode(PredictionMade.example())).decode(),
                        "attributes": POISON_ATTRIBUTES, "messageId": "forged-1"},
            "subscription": f"projects/{project}/subscriptions/{push_subscription(PredictionMade.EVENT_TYPE, SERVICE)}"}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{url}/push", json=body, headers=headers, timeout=30)


def test_a_forged_push_is_refused_and_pubsubs_own_token_is_taken(service_url, google_key):
    project, url = service_url
    forger = SigningKey.generate("google-key-1")  # Google's key id, the forger's key

    refused = [push_request(url, project, None), push_request(url, project, forger.token()),
               push_request(url, project, google_key.token(email="predict-client@test-project.iam.gserviceaccount.com"))]
    assert [r.status_code for r in refused] == [401, 401, 403]
    assert all(set(r.json()) == {"error"} for r in refused)
    assert pull(project, archive_subscription(DEAD_LETTER_TOPIC), wanted=1, timeout=3) == []  # none parked

    taken = push_request(url, project, google_key.token())
    assert taken.status_code == 200 and taken.json()["status"] == "dead-lettered"
    dead = pull(project, archive_subscription(DEAD_LETTER_TOPIC), wanted=1, timeout=30)
    assert [m.attributes["dead_letter_stage"] for m in dead] == [SERVICE]


def test_the_emulators_tokenless_pushes_are_refused_and_left_to_pubsubs_retry_policy(service_url):
    """The Pub/Sub emulator attaches no token: a configured service refuses each delivery (401), and
    the message ends where Pub/Sub's own dead-letter policy puts it, never dead-lettered by us."""
    project, _ = service_url
    publisher = pubsub_v1.PublisherClient()
    publisher.publish(publisher.topic_path(project, PredictionMade.EVENT_TYPE), encode(PredictionMade.example()),
                      **POISON_ATTRIBUTES).result(timeout=10)
    dead = pull(project, archive_subscription(DEAD_LETTER_TOPIC), wanted=1, timeout=90)
    assert len(dead) == 1
    assert "dead_letter_stage" not in dead[0].attributes  # not read by the service
    assert dead[0].attributes["CloudPubSubDeadLetterSourceSubscription"].endswith(
        push_subscription(PredictionMade.EVENT_TYPE, SERVICE))
