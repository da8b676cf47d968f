"""Calling a pipeline's Vertex AI endpoint as a client does: `:predict` and the traffic split.

`mlops predict` and the demo go through the endpoint (locally the Vertex stand-in, which forwards to
the serving container the traffic split picks), never to a serving process directly, so what they
see is what a caller of the endpoint sees. Plain REST over one session (the SDK takes seconds to
import); application default credentials in the cloud.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from mlops.core.settings import CommonSettings
from mlops.ops.errors import NotReachable

_ENDPOINT_ID_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class EndpointClient:
    def __init__(self, settings: CommonSettings, session: requests.Session | None = None):
        self.settings = settings
        local = settings.vertex_endpoint
        self.base = (local if local and "://" in local else f"http://{local}") if local \
            else f"https://{settings.location}-aiplatform.googleapis.com"
        self.session = session or self._session(bool(local))
        self._names: dict[str, str] = {}

    @staticmethod
    def _session(local: bool) -> requests.Session:
        if local:
            session = requests.Session()
            session.trust_env = False  # loopback: no proxy
            return session
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        return AuthorizedSession(credentials)

    def resource(self, endpoint_name: str) -> str:
        """The endpoint's resource name, as the deployer's `ensure_endpoint` names it (id, else display name)."""
        if endpoint_name in self._names:
            return self._names[endpoint_name]
        parent = f"projects/{self.settings.project}/locations/{self.settings.location}"
        if _ENDPOINT_ID_RE.match(endpoint_name):
            name = f"{parent}/endpoints/{endpoint_name}"
        else:
            answer = self.session.get(f"{self.base}/v1/{parent}/endpoints",
                                      params={"filter": f'display_name="{endpoint_name}"'}, timeout=30)
            found = sorted(answer.json().get("endpoints", []), key=lambda e: e.get("createTime", ""))
            if not found:
                raise NotReachable(f"no endpoint {endpoint_name!r} yet: nothing was deployed for it")
            name = found[0]["name"]
        self._names[endpoint_name] = name
        return name

    def predict(self, endpoint_name: str, payload: dict[str, Any], timeout: float = 30) -> tuple[int, Any]:
        """(HTTP status, JSON answer) of the endpoint's `:predict`."""
        response = self.session.post(f"{self.base}/v1/{self.resource(endpoint_name)}:predict", json=payload,
                                     timeout=timeout)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": {"code": response.status_code, "message": response.text[:500]}}

    def split(self, endpoint_name: str) -> dict[str, int]:
        """Model version -> its share of the traffic now ({} when the endpoint does not exist yet)."""
        answer = self.session.get(f"{self.base}/v1/{self.resource(endpoint_name)}", timeout=30)
        if answer.status_code == 404:
            return {}
        endpoint = answer.json()
        shares = {k: int(v) for k, v in (endpoint.get("trafficSplit") or {}).items()}
        return {d["modelVersionId"]: shares.get(d["id"], 0) for d in endpoint.get("deployedModels", [])}
