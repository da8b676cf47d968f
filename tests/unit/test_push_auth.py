"""Push authentication: the OIDC token Pub/Sub attaches to a push, checked by the push endpoint.

Tokens are signed with a local RSA key and checked by google-auth's own `id_token.verify_token`
against that key's certificate, served locally in the format of Google's v1 certs endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.core.events import WatchTick
from mlops.core.settings import CommonSettings, SettingsError, load_settings
from mlops.core.topology import DEAD_LETTER_TOPIC
from mlops.runtime.push import PushEndpoint, Route, create_push_app
from mlops.runtime.push_auth import CachingRequest, PushAuthenticator, push_authenticator
from mlops.testing.memory import InMemoryEventBus
from tests.fixtures.oidc import AUDIENCE, PUSH_ACCOUNT, CertsServer, SigningKey, serving_certs

PUSH_BODY = json.loads((Path(__file__).resolve().parents[1] / "data" / "push" / "watch_tick.json").read_text())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return SigningKey.generate("google-key-1")


@pytest.fixture(scope="module")
def attacker_key() -> SigningKey:
    return SigningKey.generate("attacker")


@pytest.fixture
def certs(google_key: SigningKey) -> Iterator[CertsServer]:
    with serving_certs(google_key) as served:
        yield served


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handled() -> list[Any]:
    return []


@pytest.fixture
def bus() -> InMemoryEventBus:
    return InMemoryEventBus()


def make_client(bus: InMemoryEventBus, handled: list[Any], auth: PushAuthenticator | None):
    def handler(event, envelope):
        handled.append(event)
        return []

    endpoint = PushEndpoint(service="data-watcher", project="mlops-local", bus=bus,
                            routes={WatchTick.EVENT_TYPE: Route(handler)}, dead_letter_topic=DEAD_LETTER_TOPIC,
                            auth=auth)
    return create_push_app(endpoint).test_client()


@pytest.fixture
def client(bus, handled, certs, clock):
    return make_client(bus, handled, PushAuthenticator(AUDIENCE, PUSH_ACCOUNT, certs.url,
                                                       CachingRequest(clock=clock)))


def push(client, token: str | None = None, authorization: str | None = None):
    headers = {"Authorization": authorization or f"Bearer {token}"} if (token or authorization) else {}
    return client.post("/push", json=PUSH_BODY, headers=headers)


def assert_refused(response, status: int, reason: str, bus: InMemoryEventBus, handled: list[Any]) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert reason in body["error"] and "\n" not in body["error"]
    assert handled == []
    assert bus.messages == []  # nothing dead-lettered, no stage.failed: Pub/Sub just redelivers


def test_a_push_with_pubsubs_token_is_handled(client, google_key, handled):
    response = push(client, google_key.token())
    assert response.status_code == 204
    assert len(handled) == 1


def test_both_google_issuer_spellings_are_accepted(client, google_key, handled):
    assert push(client, google_key.token(issuer="accounts.google.com")).status_code == 204


def test_a_push_without_a_token_is_401(client, bus, handled):
    response = push(client)
    assert_refused(response, 401, "no Authorization header", bus, handled)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
def test_an_authorization_that_is_not_bearer_is_401(client, bus, handled, authorization):
    assert_refused(push(client, authorization=authorization), 401, "not 'Bearer <token>'", bus, handled)


@pytest.mark.parametrize("token", ["abc", "a.b.c", "e30.e30.", "W10.e30.AA", "x" * 5000])
def test_a_malformed_token_is_401(client, bus, handled, token):
    assert_refused(push(client, token), 401, "the token is not valid", bus, handled)


def test_a_token_signed_by_another_key_under_googles_key_id_is_401(client, bus, handled, attacker_key, google_key):
    forged = SigningKey(google_key.kid, attacker_key.private_pem, attacker_key.certificate_pem).token()
    assert_refused(push(client, forged), 401, "signature", bus, handled)


def test_a_token_signed_by_an_unknown_key_is_401(client, bus, handled, attacker_key):
    assert_refused(push(client, attacker_key.token()), 401, "attacker", bus, handled)


def test_an_expired_token_is_401(client, bus, handled, google_key):
    expired = google_key.token(issued_at=time.time() - 7200, lifetime_s=3600)
    assert_refused(push(client, expired), 401, "expired", bus, handled)


def test_a_token_from_another_issuer_is_401(client, bus, handled, google_key):
    assert_refused(push(client, google_key.token(issuer="https://evil.example")), 401, "issuer", bus, handled)


def test_a_token_for_another_audience_is_403(client, bus, handled, google_key):
    other = google_key.token(audience="https://predictor-test.a.run.app")
    assert_refused(push(client, other), 403, "audience 'https://predictor-test.a.run.app'", bus, handled)


def test_a_token_of_another_identity_is_403(client, bus, handled, google_key):
    other = google_key.token(email="predict-client@test-project.iam.gserviceaccount.com")
    assert_refused(push(client, other), 403, "not the push service account", bus, handled)


def test_a_token_without_a_verified_email_is_403(client, bus, handled, google_key):
    assert_refused(push(client, google_key.token(email_verified=False)), 403, "not verified", bus, handled)


def test_the_service_account_is_compared_without_case(client, google_key, handled):
    assert push(client, google_key.token(email=PUSH_ACCOUNT.upper())).status_code == 204


def test_an_unconfigured_endpoint_takes_every_push_as_today(bus, handled):
    client = make_client(bus, handled, auth=None)
    assert push(client).status_code == 204
    assert push(client, authorization="Bearer not-even-a-token").status_code == 204
    assert len(handled) == 2


def test_healthz_needs_no_token(client):
    assert client.get("/healthz").status_code == 200


def test_the_certificates_are_fetched_once_for_as_long_as_they_are_fresh(client, certs, google_key, clock):
    for _ in range(3):
        assert push(client, google_key.token()).status_code == 204
    assert certs.fetches == 1
    clock.now += certs.max_age_s + 1
    assert push(client, google_key.token()).status_code == 204
    assert certs.fetches == 2


def test_a_rotated_key_is_fetched_again_but_forged_tokens_do_not_flood_the_endpoint(client, certs, google_key,
                                                                                     attacker_key, clock):
    assert push(client, google_key.token()).status_code == 204
    new_key = SigningKey.generate("google-key-2")
    certs.keys.append(new_key)
    assert push(client, new_key.token()).status_code == 401  # our copy is seconds old: not refetched yet
    clock.now += 31
    assert push(client, new_key.token()).status_code == 204
    fetches = certs.fetches
    for _ in range(5):
        assert push(client, attacker_key.token()).status_code == 401
    assert certs.fetches == fetches


def test_certificates_that_cannot_be_fetched_are_a_503(bus, handled, google_key):
    with serving_certs() as gone:
        url = gone.url
    client = make_client(bus, handled, PushAuthenticator(AUDIENCE, PUSH_ACCOUNT, url))
    response = push(client, google_key.token())
    assert response.status_code == 503
    assert "cannot fetch the certificates" in response.get_json()["error"]
    assert handled == [] and bus.messages == []


ENV = {"MLOPS_PROJECT": "mlops-local", "MLOPS_BUCKET": "b"}


def test_settings_configure_the_check_only_with_both_audience_and_account():
    assert push_authenticator(load_settings(CommonSettings, "trainer", ENV)) is None
    configured = load_settings(CommonSettings, "trainer", {
        **ENV, "MLOPS_PUSH_AUDIENCE": AUDIENCE, "MLOPS_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT})
    auth = push_authenticator(configured)
    assert auth is not None
    assert (auth.audience, auth.service_account, auth.certs_url) == (
        AUDIENCE, PUSH_ACCOUNT, "https://www.googleapis.com/oauth2/v1/certs")


@pytest.mark.parametrize(("extra", "problem"), [
    ({"MLOPS_PUSH_AUDIENCE": AUDIENCE}, "MLOPS_PUSH_SERVICE_ACCOUNT: required when MLOPS_PUSH_AUDIENCE is set"),
    ({"MLOPS_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT}, "MLOPS_PUSH_SERVICE_ACCOUNT: set without MLOPS_PUSH_AUDIENCE"),
    ({"MLOPS_PUSH_AUDIENCE": AUDIENCE, "MLOPS_PUSH_SERVICE_ACCOUNT": "invoker"}, "is not a service account email"),
])
def test_half_a_push_auth_configuration_stops_the_service(extra, problem):
    with pytest.raises(SettingsError) as refused:
        load_settings(CommonSettings, "trainer", {**ENV, **extra})
    assert problem in str(refused.value) and "\n" not in str(refused.value)


CHILD = """
import json, sys
from mlops import runtime
from mlops.core.settings import CommonSettings, load_settings
from mlops.ports.metrics import NullMetrics
from mlops.testing.memory import InMemoryEventBus
settings = load_settings(CommonSettings, "trainer", json.loads(sys.argv[1]))
app = runtime.push_app(settings, {}, bus=InMemoryEventBus(), metrics=NullMetrics())
print(json.dumps([m in sys.modules for m in ("mlops.runtime.push_auth", "google.auth.transport.requests")]))
"""


@pytest.mark.parametrize(("configured", "imported"), [(False, [False, False]), (True, [True, True])])
def test_a_service_imports_the_token_check_only_when_push_auth_is_configured(configured, imported):
    import subprocess
    import sys

    env = {**ENV, **({"MLOPS_PUSH_AUDIENCE": AUDIENCE, "MLOPS_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT} if configured else {})}
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(env)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == imported
