"""A local stand-in for the Vertex AI REST API: the model registry and endpoints subset we use.

Vertex AI has no emulator, yet the registrar and the deployer must run the same code locally and in
the cloud. The official SDK (`google-cloud-aiplatform`) talks plain JSON over HTTP when initialised
with `api_transport="rest"` and an `http://` endpoint, so this server answers the v1 REST calls the
SDK makes for:

  models:upload (with parentModel / versionAliases / modelId), models/{m}[@{v}] get and patch,
  models/{m}:listVersions, models/{m}:mergeVersionAliases, models list,
  endpoints create / get / list / patch, endpoints/{e}:deployModel, :undeployModel, :predict,
  and operations get.

Long-running operations complete before the response is sent (`done: true` with `response`), so the
SDK's `lro.result()` returns without polling. Errors use Google's JSON error shape so the SDK raises
the same `google.api_core.exceptions` classes it would against the real service.

`:predict` forwards `{"instances": [...]}` to one predictor URL (env `MLOPS_VERTEX_PREDICT_URL`)
after picking a deployed model by the endpoint's traffic split, and answers in Vertex's shape.

State lives in memory and, when a state file is given, is written atomically after every change, so
a restarted server still knows its models and endpoints.

Run: `python -m mlops.stack.vertex_local --port P --state FILE`, or under gunicorn as
`mlops.stack.vertex_local:create_app()` with `MLOPS_VERTEX_STATE` / `MLOPS_VERTEX_PREDICT_URL` set,
and ONE worker (`-w 1 --threads N`): state is per process, so several workers would each keep their own
registry and overwrite each other's file.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

log = logging.getLogger(__name__)

STATE_ENV = "MLOPS_VERTEX_STATE"
PREDICT_URL_ENV = "MLOPS_VERTEX_PREDICT_URL"

_TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."
# Vertex rules, enforced here so local runs fail where the cloud would.
_MODEL_ID_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
_ENDPOINT_ID_RE = re.compile(r"^(?:[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8})$")
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
_LOC = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
# Keep the last operations for `operations get`; they are all done, nobody needs more.
_MAX_OPERATIONS = 500
_PREDICT_TIMEOUT_S = 30.0

Json = dict[str, Any]


class ApiError(Exception):
    """An error answered in Google's shape: {"error": {"code", "message", "status"}}."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def _not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def _now() -> str:
    """RFC 3339 in UTC with a Z, as the REST API writes timestamps."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _empty_state() -> Json:
    return {"models": {}, "endpoints": {}, "operations": {}, "counters": {}}


# --------------------------------------------------------------------------------------------
# State: a JSON-shaped dict guarded by one lock, persisted atomically.
# --------------------------------------------------------------------------------------------


class Store:
    """All server state. Every public method of `VertexLocal` runs under `lock`."""

    def __init__(self, state_file: Path | None) -> None:
        self.state_file = state_file
        self.lock = threading.RLock()
        self.data = self._load()

    def _load(self) -> Json:
        if self.state_file is None or not self.state_file.exists():
            return _empty_state()
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        return {**_empty_state(), **data}

    def save(self) -> None:
        """Write to a temp file in the same folder, then rename: a crash never leaves half a file."""
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".vertex-state-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def next_id(self, counter: str, start: int) -> str:
        counters = self.data["counters"]
        counters[counter] = counters.get(counter, start - 1) + 1
        return str(counters[counter])


# --------------------------------------------------------------------------------------------
# Filters: the few list filters the adapter sends (`labels.k="v"`, `display_name="x"`, AND).
# --------------------------------------------------------------------------------------------

_TERM_RE = re.compile(
    r'^\s*(?P<field>labels\.[A-Za-z0-9_-]+|display_name|displayName)\s*=\s*'
    r'(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))\s*$'
)


def _parse_filter(expr: str) -> list[tuple[str, str]]:
    if not expr.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", expr.strip()):
        m = _TERM_RE.match(part)
        if not m:
            raise _invalid(
                f"filter {expr!r} is not supported by the local Vertex AI server "
                '(use labels.KEY="VALUE" or display_name="NAME", joined by AND)'
            )
        value = m["bare"] if m["bare"] is not None else re.sub(r"\\(.)", r"\1", m["quoted"])
        terms.append((m["field"], value))
    return terms


def _matches(resource: Json, terms: list[tuple[str, str]]) -> bool:
    for field_name, value in terms:
        if field_name.startswith("labels."):
            actual = resource.get("labels", {}).get(field_name[len("labels.") :])
        else:
            actual = resource.get("displayName")
        if actual != value:
            return False
    return True


# --------------------------------------------------------------------------------------------
# The API itself, independent of Flask: plain dicts in, plain dicts out.
# --------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str  # after /v1/
    query: dict[str, str]
    body: Json


class VertexLocal:
    """The REST subset, one method per route."""

    def __init__(self, store: Store, predict_url: str | None) -> None:
        self.store = store
        self.predict_url = predict_url
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Json]]] = [
            ("POST", re.compile(rf"^{_LOC}/models:upload$"), self.upload_model),
            ("GET", re.compile(rf"^{_LOC}/models$"), self.list_models),
            ("GET", re.compile(rf"^{_LOC}/models/(?P<model>[^/:@]+):listVersions$"), self.list_versions),
            (
                "POST",
                re.compile(rf"^{_LOC}/models/(?P<model>[^/:@]+)(?:@(?P<version>[^/:]+))?:mergeVersionAliases$"),
                self.merge_aliases,
            ),
            ("GET", re.compile(rf"^{_LOC}/models/(?P<model>[^/:@]+)(?:@(?P<version>[^/:]+))?$"), self.get_model),
            ("PATCH", re.compile(rf"^{_LOC}/models/(?P<model>[^/:@]+)(?:@(?P<version>[^/:]+))?$"), self.patch_model),
            ("POST", re.compile(rf"^{_LOC}/endpoints$"), self.create_endpoint),
            ("GET", re.compile(rf"^{_LOC}/endpoints$"), self.list_endpoints),
            ("GET", re.compile(rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+)$"), self.get_endpoint),
            ("PATCH", re.compile(rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+)$"), self.patch_endpoint),
            ("POST", re.compile(rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+):deployModel$"), self.deploy_model),
            ("POST", re.compile(rf"^{_LOC}/endpoints/(?P<endpoint>[^/:]+):undeployModel$"), self.undeploy_model),
            ("GET", re.compile(rf"^(?P<name>{_LOC}/(?:[^:]+/)?operations/[^/:]+)$"), self.get_operation),
        ]

    def dispatch(self, req: Request) -> Json:
        for method, pattern, handler in self.routes:
            m = pattern.match(req.path)
            if m and method == req.method:
                with self.store.lock:
                    # A copy, so Flask serialises it after the lock without racing other writers.
                    return copy.deepcopy(handler(req, **m.groupdict()))
        raise ApiError(404, "NOT_FOUND", f"the local Vertex AI server does not implement {req.method} /v1/{req.path}")

    # ----- helpers -----------------------------------------------------------------------

    def _model_entry(self, project: str, location: str, model: str) -> tuple[str, Json]:
        name = f"projects/{project}/locations/{location}/models/{model}"
        entry = self.store.data["models"].get(name)
        if entry is None:
            raise _not_found(f"Model {name} not found.")
        return name, entry

    @staticmethod
    def _resolve_version(name: str, entry: Json, version: str | None) -> str:
        """A version id, an alias, or None for the `default` alias -> the version id."""
        wanted = version or "default"
        if wanted in entry["versions"]:
            return wanted
        for vid, v in entry["versions"].items():
            if wanted in v["versionAliases"]:
                return vid
        raise _not_found(f"Model version {name}@{wanted} not found.")

    @staticmethod
    def _public(entry: Json, vid: str) -> Json:
        """A version as GetModel returns it: model labels merged under the version's own."""
        v = dict(entry["versions"][vid])
        v["labels"] = {**entry.get("modelLabels", {}), **v.get("labels", {})}
        return v

    def _operation(self, parent: str, kind: str, response_type: str, response: Json) -> Json:
        """A finished long-running operation, remembered for `operations get`."""
        op_id = self.store.next_id("operation", 1)
        now = _now()
        op = {
            "name": f"{parent}/operations/{op_id}",
            "metadata": {
                "@type": f"{_TYPE_PREFIX}{kind}OperationMetadata",
                "genericMetadata": {"createTime": now, "updateTime": now},
            },
            "done": True,
            # A snapshot: the stored operation must not change when the resource does later.
            "response": {"@type": f"{_TYPE_PREFIX}{response_type}", **copy.deepcopy(response)},
        }
        ops = self.store.data["operations"]
        ops[op["name"]] = op
        while len(ops) > _MAX_OPERATIONS:
            ops.pop(next(iter(ops)))
        return op

    @staticmethod
    def _move_aliases(entry: Json, vid: str, aliases: list[str]) -> None:
        """Give `aliases` to version `vid`, taking each away from any other version that had it."""
        for alias in aliases:
            if not _ALIAS_RE.match(alias):
                raise _invalid(f"Invalid version alias {alias!r}: must match {_ALIAS_RE.pattern}.")
        for other_id, other in entry["versions"].items():
            if other_id != vid:
                other["versionAliases"] = [a for a in other["versionAliases"] if a not in aliases]
        mine = entry["versions"][vid]["versionAliases"]
        mine.extend(a for a in aliases if a not in mine)

    # ----- models ------------------------------------------------------------------------

    def upload_model(self, req: Request, project: str, location: str) -> Json:
        body = req.body.get("model") or {}
        if not body.get("displayName"):
            raise _invalid("model.display_name is required.")
        parent_model = req.body.get("parentModel") or ""
        models = self.store.data["models"]
        if parent_model:
            name, entry = self._model_entry(*self._split_model_name(parent_model, project, location))
        else:
            model_id = req.body.get("modelId") or ""
            if model_id and not _MODEL_ID_RE.match(model_id):
                raise _invalid(f"Invalid model_id {model_id!r}: up to 63 of [a-z0-9_-], not starting with a digit or '-'.")
            # Like Vertex, generated ids are numeric; chosen ones cannot be.
            model_id = model_id or self.store.next_id("model", 1_000_001)
            name = f"projects/{project}/locations/{location}/models/{model_id}"
            if name in models:
                raise ApiError(409, "ALREADY_EXISTS", f"Model {name} already exists.")
            entry = {"modelLabels": {}, "versions": {}, "createTime": _now()}
        vid = str(1 + max((int(v) for v in entry["versions"]), default=0))
        now = _now()
        aliases = list(body.get("versionAliases") or [])
        if not entry["versions"] and "default" not in aliases:
            aliases.append("default")  # the first version always carries `default`
        version = {
            **body,
            "name": name,
            "versionId": vid,
            "versionAliases": [],
            "labels": dict(body.get("labels") or {}),
            "createTime": entry["createTime"],
            "updateTime": now,
            "versionCreateTime": now,
            "versionUpdateTime": now,
            # Custom-container models deploy on dedicated machines; the SDK reads this to build
            # the DeployedModel, and would refuse to size it without.
            "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES"],
        }
        entry["versions"][vid] = version
        try:
            self._move_aliases(entry, vid, aliases)
        except ApiError:
            del entry["versions"][vid]
            raise
        models[name] = entry
        op = self._operation(name, "UploadModel", "UploadModelResponse", {"model": name, "modelVersionId": vid})
        self.store.save()
        return op

    @staticmethod
    def _split_model_name(resource: str, project: str, location: str) -> tuple[str, str, str]:
        m = re.match(rf"^{_LOC}/models/(?P<model>[^/@]+)$", resource)
        if m:
            return m["project"], m["location"], m["model"]
        if re.match(r"^[^/@]+$", resource):
            return project, location, resource
        raise _invalid(f"Invalid parent_model {resource!r}.")

    def get_model(self, req: Request, project: str, location: str, model: str, version: str | None) -> Json:
        name, entry = self._model_entry(project, location, model)
        return self._public(entry, self._resolve_version(name, entry, version))

    def list_models(self, req: Request, project: str, location: str) -> Json:
        terms = _parse_filter(req.query.get("filter", ""))
        prefix = f"projects/{project}/locations/{location}/models/"
        found = []
        for name, entry in self.store.data["models"].items():
            if name.startswith(prefix):
                default = self._public(entry, self._resolve_version(name, entry, None))
                if _matches(default, terms):
                    found.append(default)
        return {"models": found}

    def list_versions(self, req: Request, project: str, location: str, model: str) -> Json:
        name, entry = self._model_entry(project, location, model)
        terms = _parse_filter(req.query.get("filter", ""))
        versions = [self._public(entry, vid) for vid in sorted(entry["versions"], key=int)]
        return {"models": [v for v in versions if _matches(v, terms)]}

    def merge_aliases(self, req: Request, project: str, location: str, model: str, version: str | None) -> Json:
        name, entry = self._model_entry(project, location, model)
        vid = self._resolve_version(name, entry, version)
        changes = list(req.body.get("versionAliases") or [])
        removals = {a[1:] for a in changes if a.startswith("-")}
        additions = [a for a in changes if not a.startswith("-")]
        if "default" in removals:
            raise _invalid("The default alias cannot be removed; add it to another version instead.")
        if set(additions) & removals:
            raise _invalid("An alias cannot be added and removed in the same request.")
        self._move_aliases(entry, vid, additions)
        v = entry["versions"][vid]
        v["versionAliases"] = [a for a in v["versionAliases"] if a not in removals]
        v["versionUpdateTime"] = _now()
        self.store.save()
        return self._public(entry, vid)

    def patch_model(self, req: Request, project: str, location: str, model: str, version: str | None) -> Json:
        """UpdateModel: `@version` updates that version's labels/description, no `@` the model's."""
        name, entry = self._model_entry(project, location, model)
        mask = _update_mask(req.query)
        version_level = bool(version) and version != "-"  # `@-` means the model, as no `@` does
        vid = self._resolve_version(name, entry, version if version_level else None)
        for path in mask:
            if path == "labels":
                labels = dict(req.body.get("labels") or {})
                if version_level:
                    entry["versions"][vid]["labels"] = labels
                else:
                    entry["modelLabels"] = labels
            elif path in ("displayName", "description", "versionDescription"):
                targets = [entry["versions"][vid]] if path == "versionDescription" else entry["versions"].values()
                for target in targets:
                    target[path] = req.body.get(path, "")
            else:
                raise _invalid(f"update_mask path {path!r} is not supported by the local Vertex AI server.")
        entry["versions"][vid]["versionUpdateTime"] = _now()
        self.store.save()
        return self._public(entry, vid)

    # ----- endpoints ---------------------------------------------------------------------

    def _endpoint(self, project: str, location: str, endpoint: str) -> Json:
        name = f"projects/{project}/locations/{location}/endpoints/{endpoint}"
        ep = self.store.data["endpoints"].get(name)
        if ep is None:
            raise _not_found(f"Endpoint {name} not found.")
        return ep

    def create_endpoint(self, req: Request, project: str, location: str) -> Json:
        body = req.body
        if not body.get("displayName"):
            raise _invalid("endpoint.display_name is required.")
        endpoint_id = req.query.get("endpointId") or req.query.get("endpoint_id")
        endpoint_id = endpoint_id or self.store.next_id("endpoint", 1_000_001)
        if not _ENDPOINT_ID_RE.match(endpoint_id):
            raise _invalid(f"Invalid endpoint_id {endpoint_id!r}.")
        name = f"projects/{project}/locations/{location}/endpoints/{endpoint_id}"
        if name in self.store.data["endpoints"]:
            raise ApiError(409, "ALREADY_EXISTS", f"Endpoint {name} already exists.")
        now = _now()
        ep = {**body, "name": name, "deployedModels": [], "trafficSplit": {}, "createTime": now, "updateTime": now}
        self.store.data["endpoints"][name] = ep
        op = self._operation(name, "CreateEndpoint", "Endpoint", ep)
        self.store.save()
        return op

    def get_endpoint(self, req: Request, project: str, location: str, endpoint: str) -> Json:
        return self._endpoint(project, location, endpoint)

    def list_endpoints(self, req: Request, project: str, location: str) -> Json:
        terms = _parse_filter(req.query.get("filter", ""))
        prefix = f"projects/{project}/locations/{location}/endpoints/"
        eps = [ep for name, ep in self.store.data["endpoints"].items() if name.startswith(prefix)]
        return {"endpoints": [ep for ep in eps if _matches(ep, terms)]}

    def patch_endpoint(self, req: Request, project: str, location: str, endpoint: str) -> Json:
        ep = self._endpoint(project, location, endpoint)
        for path in _update_mask(req.query):
            if path == "trafficSplit":
                ep["trafficSplit"] = _checked_split(req.body.get("trafficSplit") or {}, ep, new_id=None)
            elif path in ("displayName", "description", "labels"):
                ep[path] = req.body.get(path, {} if path == "labels" else "")
            else:
                raise _invalid(f"update_mask path {path!r} is not supported by the local Vertex AI server.")
        ep["updateTime"] = _now()
        self.store.save()
        return ep

    def deploy_model(self, req: Request, project: str, location: str, endpoint: str) -> Json:
        ep = self._endpoint(project, location, endpoint)
        dm = dict(req.body.get("deployedModel") or {})
        model_ref = dm.get("model") or ""
        m = re.match(rf"^{_LOC}/models/(?P<model>[^/@]+)(?:@(?P<version>[^/]+))?$", model_ref)
        if not m:
            raise _invalid(f"deployed_model.model {model_ref!r} is not a model resource name.")
        model_name, entry = self._model_entry(m["project"], m["location"], m["model"])
        vid = self._resolve_version(model_name, entry, m["version"])
        dm_id = self.store.next_id("deployedModel", 1_000_000_001)
        # Vertex answers with the unversioned model name plus the version id.
        dm.update(id=dm_id, model=model_name, modelVersionId=vid, createTime=_now())
        dm.setdefault("displayName", entry["versions"][vid]["displayName"])
        split = req.body.get("trafficSplit") or {}
        if split:
            # Validate before changing anything: a rejected deploy leaves the endpoint as it was.
            new_split = _checked_split(split, ep, new_id=dm_id)
        elif not ep["deployedModels"]:
            new_split = {dm_id: 100}  # nothing else to serve
        else:
            new_split = dict(ep["trafficSplit"])  # empty split: leave traffic as it is
        ep["deployedModels"].append(dm)
        ep["trafficSplit"] = new_split
        ep["updateTime"] = _now()
        op = self._operation(ep["name"], "DeployModel", "DeployModelResponse", {"deployedModel": dm})
        self.store.save()
        return op

    def undeploy_model(self, req: Request, project: str, location: str, endpoint: str) -> Json:
        ep = self._endpoint(project, location, endpoint)
        dm_id = str(req.body.get("deployedModelId") or "")
        if not any(d["id"] == dm_id for d in ep["deployedModels"]):
            raise _not_found(f"Deployed model {dm_id} not found on {ep['name']}.")
        remaining = [d for d in ep["deployedModels"] if d["id"] != dm_id]
        given = req.body.get("trafficSplit") or {}
        if not remaining:
            new_split: dict[str, int] = {}
        else:
            split = given or {k: v for k, v in ep["trafficSplit"].items() if k != dm_id}
            if int(split.get(dm_id, 0)):
                raise ApiError(400, "FAILED_PRECONDITION", f"Deployed model {dm_id} still has traffic assigned.")
            new_split = _checked_split({k: v for k, v in split.items() if k != dm_id}, {"deployedModels": remaining})
        ep["deployedModels"] = remaining
        ep["trafficSplit"] = new_split
        ep["updateTime"] = _now()
        op = self._operation(ep["name"], "UndeployModel", "UndeployModelResponse", {})
        self.store.save()
        return op

    def get_operation(self, req: Request, project: str, location: str, name: str) -> Json:
        op = self.store.data["operations"].get(name)
        if op is None:
            raise _not_found(f"Operation {name} not found.")
        return op

    # ----- prediction --------------------------------------------------------------------

    def predict(self, project: str, location: str, endpoint: str, body: Json) -> Json:
        """Pick a deployed model by traffic share, forward the instances, answer like Vertex."""
        with self.store.lock:
            ep = self._endpoint(project, location, endpoint)
            split = {k: int(v) for k, v in ep["trafficSplit"].items() if int(v) > 0}
            dms = {d["id"]: d for d in ep["deployedModels"]}
        if not split:
            raise ApiError(400, "FAILED_PRECONDITION", f"Endpoint {ep['name']} has no model receiving traffic.")
        if not self.predict_url:
            raise ApiError(
                501,
                "UNIMPLEMENTED",
                f"no predictor configured for the local Vertex AI server: set {PREDICT_URL_ENV} "
                "to the predictor's predict URL (e.g. http://127.0.0.1:8080/predict)",
            )
        if not isinstance(body.get("instances"), list):
            raise _invalid("instances must be a list.")
        dm_id = random.choices(list(split), weights=list(split.values()))[0]
        dm = dms[dm_id]
        predictions = self._forward(body, dm)
        return {
            **predictions,
            "deployedModelId": dm_id,
            "model": dm["model"],
            "modelVersionId": dm["modelVersionId"],
            "modelDisplayName": dm.get("displayName", ""),
        }

    def _forward(self, body: Json, dm: Json) -> Json:
        """POST to the predictor. Headers name the chosen version, so a local predictor serving
        several versions can pick the right one (Vertex runs one container per deployed model)."""
        payload = {"instances": body["instances"], **({"parameters": body["parameters"]} if "parameters" in body else {})}
        req = urllib.request.Request(
            self.predict_url or "",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Vertex-Deployed-Model-Id": dm["id"],
                "X-Vertex-Model": dm["model"],
                "X-Vertex-Model-Version-Id": dm["modelVersionId"],
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=_PREDICT_TIMEOUT_S) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise ApiError(e.code, "UNAVAILABLE" if e.code >= 500 else "INVALID_ARGUMENT", f"predictor: {detail}") from e
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as e:
            raise ApiError(503, "UNAVAILABLE", f"predictor at {self.predict_url} failed: {e}") from e


def _update_mask(query: dict[str, str]) -> list[str]:
    """`updateMask=a,b` as camelCase paths (the SDK may send either spelling)."""
    raw = query.get("updateMask") or query.get("update_mask") or ""
    paths = [p.strip() for p in raw.split(",") if p.strip()]
    if not paths:
        raise _invalid("update_mask is required.")
    return [re.sub(r"_([a-z])", lambda m: m[1].upper(), p) for p in paths]


def _checked_split(split: dict[str, Any], ep: Json, new_id: str | None = None) -> dict[str, int]:
    """Validate a traffic split against the endpoint; key "0" means the model being deployed."""
    known = {d["id"] for d in ep["deployedModels"]}
    out: dict[str, int] = {}
    for key, value in split.items():
        target = new_id if key == "0" and new_id else str(key)
        if target not in known and target != new_id:
            raise _invalid(f"traffic_split names {key!r}, which is not deployed on this endpoint.")
        try:
            percent = int(value)
        except (TypeError, ValueError):
            raise _invalid(f"traffic_split[{key!r}] must be an integer.") from None
        if percent < 0:
            raise _invalid(f"traffic_split[{key!r}] must not be negative.")
        out[target] = percent
    if sum(out.values()) != 100:
        raise _invalid(f"The sum of traffic_split values must be 100, got {sum(out.values())}.")
    return {k: v for k, v in out.items() if v > 0}


# --------------------------------------------------------------------------------------------
# Flask wiring.
# --------------------------------------------------------------------------------------------


def _error_response(err: ApiError) -> tuple[Response, int]:
    return jsonify({"error": {"code": err.code, "message": err.message, "status": err.status}}), err.code


def create_app(state_file: Path | None = None, *, predict_url: str | None = None) -> Flask:
    """The WSGI app. With no arguments it reads `MLOPS_VERTEX_STATE` (state file; unset means
    memory only) and `MLOPS_VERTEX_PREDICT_URL`, which is how gunicorn starts it."""
    if state_file is None and os.environ.get(STATE_ENV):
        state_file = Path(os.environ[STATE_ENV])
    api = VertexLocal(Store(state_file), predict_url or os.environ.get(PREDICT_URL_ENV) or None)
    app = Flask(__name__)
    app.config["VERTEX_LOCAL"] = api

    # Fault injection for tests (as emulators offer): calls whose path contains `match` wait
    # `delay_s` first, so a test can kill a client in the middle of a multi-call operation, or during
    # the slow call itself. A stalled call still runs once its delay is over, whether or not its
    # client is still there (as a Vertex AI operation does): `stalled` counts those waiting now.
    faults: dict[str, float] = {}
    stalls = {"now": 0, "total": 0}
    stalls_lock = threading.Lock()

    @app.get("/healthz")
    def healthz() -> Json:
        return {"status": "ok"}

    @app.route("/_faults", methods=["GET", "PUT", "DELETE"])
    def set_faults() -> Json:
        if request.method == "PUT":
            body = request.get_json(silent=True) or {}
            faults.clear()
            faults.update({str(k): float(v) for k, v in body.get("delays", {}).items()})
            stalls["total"] = 0  # counted per set of faults
        elif request.method == "DELETE":
            faults.clear()
        return {"delays": faults, "stalled": stalls["now"], "stalled_total": stalls["total"]}

    @app.before_request
    def inject_delay() -> None:
        for match, delay in list(faults.items()):
            if match in request.path:
                with stalls_lock:
                    stalls["now"] += 1
                    stalls["total"] += 1
                try:
                    time.sleep(delay)
                finally:
                    with stalls_lock:
                        stalls["now"] -= 1

    @app.post("/v1/projects/<project>/locations/<location>/endpoints/<endpoint>:predict")
    def predict(project: str, location: str, endpoint: str) -> Any:
        try:
            return api.predict(project, location, endpoint, request.get_json(silent=True) or {})
        except ApiError as err:
            return _error_response(err)

    @app.route("/v1/<path:path>", methods=["GET", "POST", "PATCH", "DELETE"])
    def v1(path: str) -> Any:
        try:
            body = request.get_json(silent=True) if request.data else {}
            if body is not None and not isinstance(body, dict):
                raise _invalid("request body must be a JSON object.")
            req = Request(request.method, path, request.args.to_dict(), body or {})
            return api.dispatch(req)
        except ApiError as err:
            if err.code == 404 and "does not implement" in err.message:
                log.warning("unimplemented Vertex AI call: %s /v1/%s", request.method, path)
            return _error_response(err)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Vertex AI REST server (model registry + endpoints).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, default=None, help=f"JSON state file (default: ${STATE_ENV}, else memory)")
    parser.add_argument("--predict-url", default=None, help=f"predictor URL for :predict (default: ${PREDICT_URL_ENV})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app(args.state, predict_url=args.predict_url)
    # threaded: the SDK may issue calls concurrently; the store's lock keeps them consistent.
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
