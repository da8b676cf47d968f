"""Who may push: the OIDC token Pub/Sub attaches to each push request, checked in code.

IAM (`roles/run.invoker`) keeps strangers out of a Cloud Run service, but everyone the invoker
binding admits could post a forged event to `/push`. With `MLOPS_PUSH_AUDIENCE` set, `/push` takes a
request only with `Authorization: Bearer <token>` where the token is signed by Google (certificates
from `MLOPS_PUSH_CERTS_URL`), current, for that audience, from Google's issuer, and names the push
service account (`MLOPS_PUSH_SERVICE_ACCOUNT`) with a verified email: what a push subscription's
`oidc_token` makes Pub/Sub send.

- 401: no token, or one that proves nothing (malformed, not signed by a key we trust, expired, from
  another issuer): the caller is not authenticated.
- 403: an authentic token of another audience or identity: authenticated, not allowed.
- 503: Google's certificates could not be fetched: nobody's fault, Pub/Sub retries.
Nothing is dead-lettered for a refused push: the message was never ours to judge. Pub/Sub keeps it
and redelivers (and, past `max_delivery_attempts`, dead-letters it itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.oauth2 import id_token

from mlops.core.settings import GOOGLE_OAUTH2_CERTS_URL, CommonSettings

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Tokens are minted on Google's clock and checked on ours (`iat` must not be in the future).
CLOCK_SKEW_S = 10


class PushRefused(Exception):
    """A push request refused before its message is read: the HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CachingRequest(transport.Request):
    """A google-auth transport that keeps each successful GET for as long as its `Cache-Control:
    max-age` says. `id_token.verify_token` fetches the certificates on every call; Google rotates
    them about daily and says how long each answer holds, so a push costs no certificate fetch.
    `refresh` drops a cached answer at most once per `min_refresh_s`, so a token naming a key we
    have not seen yet (a rotation) refetches once, and a flood of forged tokens does not."""

    def __init__(self, inner: transport.Request | None = None, default_ttl_s: float = 300.0,
                 min_refresh_s: float = 30.0, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if inner is None:
            # requests and its HTTP stack: imported only by a service that checks push tokens.
            import google.auth.transport.requests

            inner = google.auth.transport.requests.Request()
        self._inner = inner
        self._default_ttl_s = default_ttl_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, float, transport.Response]] = {}  # url: (fetched, expires, answer)
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None = None, **kwargs: Any) -> transport.Response:
        if method != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout or self._timeout_s,
                               **kwargs)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and now < cached[1]:
                return cached[2]
        response = self._inner(url, method="GET", headers=headers, timeout=timeout or self._timeout_s, **kwargs)
        self.fetches += 1
        if response.status == 200:
            # Read the body now: the cached answer is read again by every later verification.
            _ = response.data
            with self._lock:
                self._cache[url] = (now, now + self._ttl(response.headers), response)
        return response

    def refresh(self, url: str) -> bool:
        """Forget the cached answer for `url`, unless it was fetched less than `min_refresh_s` ago."""
        with self._lock:
            cached = self._cache.get(url)
            if cached is None or self._clock() - cached[0] < self._min_refresh_s:
                return False
            del self._cache[url]
            return True

    def _ttl(self, headers: Mapping[str, str]) -> float:
        lowered = {key.lower(): value for key, value in headers.items()}
        for directive in lowered.get("cache-control", "").split(","):
            name, _, value = directive.strip().partition("=")
            if name.lower() == "max-age" and value.strip().isdigit():
                return float(value.strip())
        return self._default_ttl_s


@dataclass
class PushAuthenticator:
    audience: str
    service_account: str
    certs_url: str = GOOGLE_OAUTH2_CERTS_URL
    request: CachingRequest = field(default_factory=CachingRequest)

    def check(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims, or PushRefused with the status and the reason."""
        if not authorization:
            raise PushRefused(401, "no Authorization header: a push must carry Pub/Sub's OIDC token "
                                   "('Authorization: Bearer <token>')")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PushRefused(401, "the Authorization header is not 'Bearer <token>'")
        claims = self._verified(token.strip())
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise PushRefused(401, f"the token's issuer {claims.get('iss')!r} is not Google's")
        if claims.get("aud") != self.audience:
            raise PushRefused(403, f"the token is for audience {claims.get('aud')!r}, not this service's "
                                   f"({self.audience!r})")
        email = claims.get("email")
        if not isinstance(email, str) or email.lower() != self.service_account.lower():
            raise PushRefused(403, f"the token names {email!r}, not the push service account")
        if claims.get("email_verified") not in (True, "true"):
            raise PushRefused(403, "the token's email is not verified")
        return claims

    def _verified(self, token: str) -> Mapping[str, Any]:
        """Signature, `iat` and `exp` by google-auth's own check; the audience is compared after it,
        so that a wrong audience (authentic, not for us) is told apart from a forged token."""
        for attempt in (1, 2):
            try:
                return id_token.verify_token(token, self.request, audience=None, certs_url=self.certs_url,
                                             clock_skew_in_seconds=CLOCK_SKEW_S)
            except auth_exceptions.TransportError as error:
                raise PushRefused(503, f"cannot fetch the certificates to check the token: {str(error)[:300]}") from None
            except Exception as error:  # noqa: BLE001 - any failure to decode or verify a caller's bytes is theirs
                if attempt == 1 and self.request.refresh(self.certs_url):
                    continue  # perhaps signed with a key Google rotated in since our copy
                raise PushRefused(401, f"the token is not valid: {str(error)[:300]}") from None
        raise AssertionError("unreachable")


def push_authenticator(settings: CommonSettings) -> PushAuthenticator | None:
    """The check the settings ask for; None when push authentication is not configured (the local
    stack: the Pub/Sub emulator attaches no token)."""
    if not settings.push_audience or not settings.push_service_account:
        return None
    return PushAuthenticator(settings.push_audience, settings.push_service_account, settings.push_certs_url)
