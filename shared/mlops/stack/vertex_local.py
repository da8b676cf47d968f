"""A local stand-in for the Vertex AI REST API: the model registry and endpoints subset we use.

Vertex AI has no emulator, yet the registrar and the deployer must run the same code locally and in
the cloud. The official SDK (`google-cloud-aiplatform`) talks plain JSON over HTTP when initialised
with `api_transport="rest"` and an `http://` endpoint, so this server answers the v1 REST calls the
SDK makes for:

  models:upload (with parentModel / versionAliases / modelId), models/{m}[@{v}] get and patch,
  models/{m}:listVersions, models/{m}:mergeVersionAliases, models list,
  endpoints create / get / list / patch, endpoints/{e}:deployModel, :undeployModel, :predict,
  and operations get.

It fails where Vertex AI fails, so that local runs show what the cloud would refuse:
- Upload refuses a model without a `containerSpec.imageUri`, with an image it cannot run (the one
  place that maps image URIs to local commands: `LocalImages`), or whose `artifactUri` is missing or
  not `gs://` (INVALID_ARGUMENT, Google's error shape, so the SDK raises `BadRequest`).
- DeployModel starts the model's serving container as a local process (the image's entry point) with
  the environment Vertex gives a custom container: the `AIP_*` variables and the model's
  `containerSpec.env`, nothing of this server's own (only the emulator hosts, which stand for Google's
  network). The operation completes once the container answers its health route; a container that
  exits or never answers fails the operation with its own last log lines, and the endpoint is left
  as it was. A traffic split that does not sum to 100 or names an unknown deployed model is refused.
- `:predict` picks a deployed model by the traffic split, forwards the request body unchanged to that
  model's container (its predict route) and answers `predictions` plus what Vertex adds
  (`deployedModelId`, `model`, `modelVersionId`, `modelDisplayName`). UndeployModel stops the process.
- Long-running operations take `MLOPS_VERTEX_OPERATION_DELAY_S` seconds (default 0: done at once) and
  are polled as the SDK polls them (`operations get`, also on the `/ui/` path the generated REST
  transport uses for endpoint operations).

The serving containers are this server's children: recorded in the state (pid, port, log), adopted
by a restarted server, started again when one dies (as Vertex restarts a crashed container), and
listed/stopped by `mlops status` / `mlops down` (mlops.stack.supervisor).

State lives in memory and, when a state file is given, is written atomically after every change, so
a restarted server still knows its models and endpoints.

Run: `python -m mlops.stack.vertex_local --port P --state FILE`, or under a WSGI server as
`mlops.stack.vertex_local:create_app()` with `MLOPS_VERTEX_STATE` set, in ONE process with threads
(docker-compose: `waitress-serve --call mlops.stack.vertex_local:create_app`): state is per process,
so several workers would each keep their own registry and overwrite each other's file.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import hashlib
import json
import logging
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from mlops.stack.processes import ManagedProcess, free_port, http_ok, kill_group, launch, pid_alive, stop_pid

log = logging.getLogger(__name__)

STATE_ENV = "MLOPS_VERTEX_STATE"
# Seconds every long-running operation takes (a deploy: at least this, and until its container is healthy).
DELAY_ENV = "MLOPS_VERTEX_OPERATION_DELAY_S"
# Longest a deployed container may take to answer its health route before the deploy fails.
DEPLOY_TIMEOUT_ENV = "MLOPS_VERTEX_DEPLOY_TIMEOUT_S"
# Where serving containers log (default: `logs/` beside the state file).
LOG_DIR_ENV = "MLOPS_VERTEX_LOG_DIR"
# More images the stand-in can run, as JSON {"<image name>": ["argv", ..., "{port}"]} (tests' stub servers).
IMAGES_ENV = "MLOPS_VERTEX_LOCAL_IMAGES"

_TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."
# Vertex rules, enforced here so local runs fail where the cloud would.
_MODEL_ID_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
_ENDPOINT_ID_RE = re.compile(r"^(?:[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8})$")
_ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
_LOC = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
# Keep the last operations for `operations get`; they are all done, nobody needs more.
_MAX_OPERATIONS = 500
_PREDICT_TIMEOUT_S = 30.0
_DEFAULT_DEPLOY_TIMEOUT_S = 120.0
_WATCH_EVERY_S = 1.0
# What a serving container gets from this machine besides Vertex's variables: the basics of a process,
# and the emulator hosts, which stand for the Google network a container reaches in the cloud.
_PLATFORM_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST",
                 "BIGQUERY_EMULATOR_HOST", "BIGQUERY_STORAGE_EMULATOR_HOST")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVICE_ACCOUNT_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z.]+$")

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
# Images: the one place that maps a serving image URI to the local command standing for it.
# --------------------------------------------------------------------------------------------

PREDICTOR_IMAGE_NAMES = ("predictor", "mlops-predictor")


class LocalImages:
    """Image URI -> the command that stands for the image's entry point, run on a port.

    An image is known by its name (the last path segment, without tag or digest), so the cloud's
    `<region>-docker.pkg.dev/<project>/<repo>/predictor:<tag>` and the local default
    `mlops-predictor:latest` both run the predictor: its image's entry point, `python -m predictor`
    (services/predictor/Dockerfile's CMD; `predictor_argv`), listening on `AIP_HTTP_PORT` on the loopback
    interface instead of every interface. `extra` (or `MLOPS_VERTEX_LOCAL_IMAGES`)
    adds images, as argv lists in which `{port}` is replaced. Any other image does not exist here,
    and Vertex AI refuses a model whose image it cannot pull."""

    def __init__(self, extra: Mapping[str, Sequence[str]] | None = None) -> None:
        from_env = json.loads(os.environ.get(IMAGES_ENV) or "{}")
        self._extra = {**from_env, **dict(extra or {})}

    @staticmethod
    def name_of(image_uri: str) -> str:
        return image_uri.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]

    def knows(self, image_uri: str) -> bool:
        name = self.name_of(image_uri)
        return name in self._extra or name in PREDICTOR_IMAGE_NAMES

    def command(self, image_uri: str, port: int) -> tuple[list[str], Path | None]:
        name = self.name_of(image_uri)
        if name in self._extra:
            return [str(a).replace("{port}", str(port)) for a in self._extra[name]], None
        if name in PREDICTOR_IMAGE_NAMES:
            return predictor_argv()
        raise _invalid(f"Image {image_uri!r} not found: the local Vertex AI server runs only "
                       f"{', '.join(PREDICTOR_IMAGE_NAMES + tuple(self._extra))}.")


def predictor_argv() -> tuple[list[str], Path]:
    """The predictor image's entry point (its Dockerfile's CMD) as a local command and the folder it runs
    in: the port comes from AIP_HTTP_PORT in the environment, as in the container."""
    from mlops.stack.emulators import HOST
    from mlops.stack.supervisor import repo_root

    folder = repo_root() / "services" / "predictor"
    return [sys.executable, "-m", "predictor", "--host", HOST], folder


def _error_lines(log_tail: str, keep: int = 6) -> str:
    """The container's own last words: its log's tail without gunicorn's routine lines (a container
    started by an older stand-in still runs gunicorn)."""
    routine = re.compile(r"^\[[0-9-]+ [0-9:]+ [^]]*\] \[\d+\] \[(INFO|DEBUG)\]|^=== ")
    lines = [line.strip() for line in log_tail.splitlines() if line.strip() and not routine.match(line)]
    return " | ".join(lines[-keep:])[-2000:]


def _project_number(project: str) -> str:
    """A stable 12-digit stand-in for the project number Vertex AI gives containers (AIP_PROJECT_NUMBER)."""
    return str(int(hashlib.sha256(project.encode()).hexdigest()[:12], 16) % 10**12).zfill(12)


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

    def __init__(self, store: Store, *, images: LocalImages | None = None, operation_delay_s: float = 0.0,
                 deploy_timeout_s: float = _DEFAULT_DEPLOY_TIMEOUT_S, log_dir: Path | None = None) -> None:
        self.store = store
        self.images = images or LocalImages()
        self.operation_delay_s = operation_delay_s
        self.deploy_timeout_s = deploy_timeout_s
        self.log_dir = log_dir or (store.state_file.parent / "logs" if store.state_file
                                   else Path(tempfile.mkdtemp(prefix="vertex-local-")))
        import requests
        from requests.adapters import HTTPAdapter

        self._http = requests.Session()
        self._http.trust_env = False  # loopback only: no proxy
        self._http.mount("http://", HTTPAdapter(pool_connections=16, pool_maxsize=64))
        # Serving containers this process launched (to reap them); the state holds every one's pid.
        self._processes: dict[str, ManagedProcess] = {}
        self._closed = threading.Event()
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

    def _operation(self, parent: str, kind: str, response_type: str, response: Json | None,
                   delay_s: float | None = None) -> Json:
        """A long-running operation, remembered for `operations get`. It is done after `delay_s`
        (default: the server's operation delay); `response=None` leaves it to a worker to finish
        (a deploy, done when its container is healthy). Keys starting with `_` are never answered."""
        op_id = self.store.next_id("operation", 1)
        now = _now()
        delay = self.operation_delay_s if delay_s is None else delay_s
        op: Json = {
            "name": f"{parent}/operations/{op_id}",
            "metadata": {
                "@type": f"{_TYPE_PREFIX}{kind}OperationMetadata",
                "genericMetadata": {"createTime": now, "updateTime": now},
            },
            "done": False,
        }
        if response is not None:
            # A snapshot: the stored operation must not change when the resource does later.
            op["_response"] = {"@type": f"{_TYPE_PREFIX}{response_type}", **copy.deepcopy(response)}
            op["_doneAt"] = time.time() + delay
            self._settle(op)
        ops = self.store.data["operations"]
        ops[op["name"]] = op
        while len(ops) > _MAX_OPERATIONS:
            ops.pop(next(iter(ops)))
        return op

    @staticmethod
    def _settle(op: Json) -> None:
        """Finish an operation whose time has come (its effect is already applied)."""
        if not op["done"] and "_response" in op and time.time() >= op.get("_doneAt", 0):
            op["done"] = True
            op["response"] = op.pop("_response")
            op.pop("_doneAt", None)
            op["metadata"]["genericMetadata"]["updateTime"] = _now()

    @staticmethod
    def _answer(op: Json) -> Json:
        return {k: v for k, v in op.items() if not k.startswith("_")}

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
        self._check_serving(body)
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
        return self._answer(op)

    def _check_serving(self, model: Json) -> None:
        """What Vertex refuses at upload for a custom-container model: no image or one it cannot pull,
        malformed env names, and (the loop's serving container needs it) an artifact not in Cloud Storage."""
        spec = model.get("containerSpec") or {}
        image = spec.get("imageUri") or ""
        if not image:
            raise _invalid("model.container_spec.image_uri is required.")
        if not self.images.knows(image):
            self.images.command(image, 0)  # raises: the image does not exist here
        for var in spec.get("env") or []:
            if not _ENV_NAME_RE.match(str(var.get("name", ""))):
                raise _invalid(f"container_spec.env name {var.get('name')!r} is not a valid C identifier.")
        artifact = model.get("artifactUri") or ""
        if not artifact:
            raise _invalid("model.artifact_uri is required: the serving container reads its model from "
                           "AIP_STORAGE_URI.")
        if not artifact.startswith("gs://"):
            raise _invalid(f"model.artifact_uri {artifact!r} must be a Cloud Storage folder (gs://...).")

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
        return self._answer(op)

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
        """Validate now (a refused deploy changes nothing), then start the model's container; the
        operation completes when it answers its health route, or fails with its own error."""
        ep = self._endpoint(project, location, endpoint)
        dm = dict(req.body.get("deployedModel") or {})
        model_ref = dm.get("model") or ""
        m = re.match(rf"^{_LOC}/models/(?P<model>[^/@]+)(?:@(?P<version>[^/]+))?$", model_ref)
        if not m:
            raise _invalid(f"deployed_model.model {model_ref!r} is not a model resource name.")
        model_name, entry = self._model_entry(m["project"], m["location"], m["model"])
        vid = self._resolve_version(model_name, entry, m["version"])
        account = dm.get("serviceAccount") or ""
        if account and not _SERVICE_ACCOUNT_RE.match(account):
            raise _invalid(f"deployed_model.service_account {account!r} is not a service account email.")
        if any(op.get("_deploy", {}).get("endpoint") == ep["name"] for op in self.store.data["operations"].values()):
            raise ApiError(400, "FAILED_PRECONDITION", f"Endpoint {ep['name']} has a DeployModel operation in "
                                                        "progress; wait for it to finish.")
        dm_id = self.store.next_id("deployedModel", 1_000_000_001)
        split = {str(k): v for k, v in (req.body.get("trafficSplit") or {}).items()}
        if split:
            _checked_split(split, ep, new_id=dm_id)
        # Vertex answers with the unversioned model name plus the version id.
        dm.update(id=dm_id, model=model_name, modelVersionId=vid, createTime=_now())
        dm.setdefault("displayName", entry["versions"][vid]["displayName"])
        op = self._operation(ep["name"], "DeployModel", "DeployModelResponse", None)
        op["_deploy"] = {"endpoint": ep["name"], "deployedModel": dm, "trafficSplit": split,
                         "startedAt": time.time()}
        self.store.save()
        self._start_deploy(op["name"])
        return self._answer(op)

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
        self._stop_container(dm_id)
        op = self._operation(ep["name"], "UndeployModel", "UndeployModelResponse", {})
        self.store.save()
        return self._answer(op)

    def get_operation(self, req: Request, project: str, location: str, name: str) -> Json:
        op = self.store.data["operations"].get(name)
        if op is None:
            raise _not_found(f"Operation {name} not found.")
        self._settle(op)
        return self._answer(op)

    # ----- serving containers ------------------------------------------------------------

    def _start_deploy(self, op_name: str) -> None:
        threading.Thread(target=self._run_deploy, args=(op_name,), name=f"deploy-{op_name.rsplit('/', 1)[-1]}",
                         daemon=True).start()

    def _container_record(self, ep_name: str, dm: Json) -> Json:
        """How to run a deployed model's container: its command and exactly Vertex's environment."""
        m = re.match(rf"^{_LOC}/endpoints/(?P<endpoint>[^/]+)$", ep_name)
        assert m is not None  # endpoint names are made here
        model_name, entry = self._model_entry(*self._split_model_name(dm["model"], m["project"], m["location"]))
        version = entry["versions"][dm["modelVersionId"]]
        spec = version.get("containerSpec") or {}
        port = free_port("127.0.0.1")
        argv, cwd = self.images.command(spec.get("imageUri", ""), port)
        endpoint_id, dm_id = m["endpoint"], dm["id"]
        machine = ((dm.get("dedicatedResources") or {}).get("machineSpec") or {}).get("machineType", "n1-standard-2")
        env = {k: os.environ[k] for k in _PLATFORM_ENV if k in os.environ}
        env.update({str(v["name"]): str(v.get("value", "")) for v in spec.get("env") or []})
        env.update({
            "AIP_MODE": "PREDICTION",
            "AIP_MODE_VERSION": "1.0.0",
            "AIP_FRAMEWORK": "CUSTOM_CONTAINER",
            "AIP_HTTP_PORT": str(port),
            "AIP_PREDICT_ROUTE": spec.get("predictRoute") or f"/v1/endpoints/{endpoint_id}/deployedModels/{dm_id}:predict",
            "AIP_HEALTH_ROUTE": spec.get("healthRoute") or f"/v1/endpoints/{endpoint_id}/deployedModels/{dm_id}",
            "AIP_STORAGE_URI": version.get("artifactUri", ""),
            "AIP_DEPLOYED_MODEL_ID": dm_id,
            "AIP_ENDPOINT_ID": endpoint_id,
            "AIP_MODEL_NAME": model_name.rsplit("/", 1)[-1],
            "AIP_MACHINE_TYPE": machine,
            "AIP_PROJECT_NUMBER": _project_number(m["project"]),
        })
        return {"deployedModelId": dm_id, "endpoint": ep_name, "model": model_name,
                "modelVersionId": dm["modelVersionId"], "port": port, "pid": 0, "log": "",
                "argv": argv, "cwd": str(cwd) if cwd else "", "env": env,
                "healthRoute": env["AIP_HEALTH_ROUTE"], "predictRoute": env["AIP_PREDICT_ROUTE"]}

    def _launch(self, record: Json) -> ManagedProcess:
        process = launch(record["argv"], name=f"serving-{record['deployedModelId']}", log_dir=self.log_dir,
                         env=record["env"], cwd=Path(record["cwd"]) if record["cwd"] else None)
        record["pid"], record["log"] = process.pid, str(process.log_path)
        self._processes[record["deployedModelId"]] = process
        return process

    def _await_healthy(self, process: ManagedProcess, record: Json) -> str | None:
        """None once the container answers its health route; else the error Vertex would report."""
        url = f"http://127.0.0.1:{record['port']}{record['healthRoute']}"
        deadline = time.monotonic() + self.deploy_timeout_s
        while not self._closed.is_set():
            if not process.alive():
                return (f"Model server exited unexpectedly (exit code {process.popen.returncode}). "
                        f"Model server logs: {_error_lines(process.log_tail(60)) or '(none)'}")
            if http_ok(url, timeout=1.0):
                return None
            if time.monotonic() > deadline:
                return (f"Model server never became ready within {self.deploy_timeout_s:.0f} s (no 200 on "
                        f"{record['healthRoute']}). Model server logs: {_error_lines(process.log_tail(60)) or '(none)'}")
            time.sleep(0.1)
        return "the local Vertex AI server is stopping"

    def _run_deploy(self, op_name: str) -> None:
        with self.store.lock:
            op = self.store.data["operations"][op_name]
            job = op["_deploy"]
            dm = job["deployedModel"]
            try:
                record = self._container_record(job["endpoint"], dm)
            except ApiError as err:
                self._fail(op, err.message)
                return
            self.store.data.setdefault("containers", {})[dm["id"]] = record
            process = self._launch(record)
            self.store.save()
        error = self._await_healthy(process, record)
        wait = job["startedAt"] + self.operation_delay_s - time.time()
        if wait > 0 and error is None:
            self._closed.wait(wait)  # an operation takes at least the configured time
        with self.store.lock:
            ep = self.store.data["endpoints"].get(job["endpoint"])
            if error is None and ep is None:
                error = f"Endpoint {job['endpoint']} was deleted during the deploy."
            if error is None:
                try:
                    if job["trafficSplit"]:
                        split = _checked_split(job["trafficSplit"], ep, new_id=dm["id"])
                    elif not ep["deployedModels"]:
                        split = {dm["id"]: 100}  # nothing else to serve
                    else:
                        split = dict(ep["trafficSplit"])  # empty split: leave traffic as it is
                except ApiError as err:
                    error = f"The traffic split no longer fits the endpoint: {err.message}"
            if error is not None:
                log.warning("deploy failed: %s", error)
                self._stop_container(dm["id"])
                self._fail(op, error)
                return
            ep["deployedModels"].append(dm)
            ep["trafficSplit"] = split
            ep["updateTime"] = _now()
            op.pop("_deploy", None)
            op["done"] = True
            op["response"] = {"@type": f"{_TYPE_PREFIX}DeployModelResponse", "deployedModel": copy.deepcopy(dm)}
            op["metadata"]["genericMetadata"]["updateTime"] = _now()
            self.store.save()
            log.info("deployed %s on %s (container pid %s, port %s)", dm["id"], job["endpoint"], record["pid"],
                     record["port"])

    def _fail(self, op: Json, message: str) -> None:
        op.pop("_deploy", None)
        op["done"] = True
        # FAILED_PRECONDITION: what Vertex AI answers for a model server that does not come up.
        op["error"] = {"code": 9, "message": message}
        op["metadata"]["genericMetadata"]["updateTime"] = _now()
        self.store.save()

    def _stop_container(self, dm_id: str) -> None:
        record = self.store.data.get("containers", {}).pop(dm_id, None)
        process = self._processes.pop(dm_id, None)
        if process is not None:
            process.stop(grace=5.0)
        elif record and record.get("pid"):
            stop_pid(int(record["pid"]), grace=5.0)

    def resume(self) -> None:
        """After a restart: adopt the containers still running, start again those that died, and
        carry on the deploys that were in flight (their containers are started afresh)."""
        with self.store.lock:
            deployed = {d["id"] for ep in self.store.data["endpoints"].values() for d in ep["deployedModels"]}
            pending = [name for name, op in self.store.data["operations"].items() if "_deploy" in op]
            pending_ids = {self.store.data["operations"][n]["_deploy"]["deployedModel"]["id"] for n in pending}
            containers = self.store.data.setdefault("containers", {})
            for dm_id, record in list(containers.items()):
                if dm_id in pending_ids or dm_id not in deployed:
                    self._stop_container(dm_id)
                elif not pid_alive(int(record.get("pid") or 0)):
                    self._restart(record)
            for ep in self.store.data["endpoints"].values():
                for dm in ep["deployedModels"]:
                    if dm["id"] not in containers:
                        containers[dm["id"]] = self._container_record(ep["name"], dm)
                        self._launch(containers[dm["id"]])
            self.store.save()
        for name in pending:
            self._start_deploy(name)
        threading.Thread(target=self._watch, name="vertex-containers", daemon=True).start()

    def _watch(self) -> None:
        """Start again a deployed model's container that died, as Vertex AI restarts a container that
        fails its liveness probe (docs: "Custom container requirements for inference", liveness
        checks). Until the new one is healthy, `:predict` routed to it answers 503 UNAVAILABLE."""
        while not self._closed.wait(_WATCH_EVERY_S):
            with self.store.lock:
                deployed = {d["id"] for ep in self.store.data["endpoints"].values() for d in ep["deployedModels"]}
                for dm_id, record in list(self.store.data.get("containers", {}).items()):
                    process = self._processes.get(dm_id)
                    alive = process.alive() if process is not None else pid_alive(int(record.get("pid") or 0))
                    if dm_id in deployed and not alive:
                        self._restart(record)

    def _restart(self, record: Json) -> None:
        """A dead container's leftovers go first (a container started as a gunicorn master and worker,
        by an older stand-in, leaves a worker holding the port), then the same command on the same
        port; `restarts` counts them for `mlops status`."""
        dm_id = record["deployedModelId"]
        log.warning("serving container of %s exited; starting it again", dm_id)
        old = self._processes.pop(dm_id, None)
        if int(record.get("pid") or 0) > 1:
            kill_group(int(record["pid"]))
        if old is not None:
            old.stop(grace=0.0)  # gone already: this reaps it
        record["restarts"] = int(record.get("restarts") or 0) + 1
        self._launch(record)
        self.store.save()

    def containers(self) -> list[Json]:
        with self.store.lock:
            return copy.deepcopy(list(self.store.data.get("containers", {}).values()))

    def close(self) -> None:
        """Stop every serving container this server runs (tests; a server's exit)."""
        self._closed.set()
        with self.store.lock:
            # The records stay: a server started again on this state starts the deployed ones again.
            for dm_id, record in self.store.data.get("containers", {}).items():
                process = self._processes.pop(dm_id, None)
                if process is not None:
                    process.stop(grace=5.0)
                elif record.get("pid"):
                    stop_pid(int(record["pid"]), grace=5.0)

    # ----- prediction --------------------------------------------------------------------

    def predict(self, project: str, location: str, endpoint: str, raw: bytes) -> Json:
        """Pick a deployed model by traffic share, forward the request to its container unchanged,
        answer like Vertex: the container's `predictions` plus the ids Vertex adds."""
        with self.store.lock:
            ep = self._endpoint(project, location, endpoint)
            split = {k: int(v) for k, v in ep["trafficSplit"].items() if int(v) > 0}
            dms = {d["id"]: dict(d) for d in ep["deployedModels"]}
            # Only what forwarding needs: copying whole records (their env) on every request costs.
            containers = {k: {"deployedModelId": k, "port": c["port"], "predictRoute": c["predictRoute"]}
                          for k, c in self.store.data.get("containers", {}).items() if k in dms}
        if not split:
            raise ApiError(400, "FAILED_PRECONDITION", f"Endpoint {ep['name']} has no model receiving traffic.")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _invalid("Invalid JSON payload received.") from None
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            raise _invalid("instances must be a list.")
        dm_id = random.choices(list(split), weights=list(split.values()))[0]
        dm, container = dms[dm_id], containers.get(dm_id)
        if container is None:
            raise ApiError(503, "UNAVAILABLE", f"Deployed model {dm_id} has no running model server.")
        answer = self._forward(raw, container)
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list):
            raise ApiError(500, "INTERNAL", f"The model server of {dm_id} answered without a predictions list.")
        return {
            "predictions": predictions,
            **({"metadata": answer["metadata"]} if "metadata" in answer else {}),
            "deployedModelId": dm_id,
            "model": dm["model"],
            "modelVersionId": dm["modelVersionId"],
            "modelDisplayName": dm.get("displayName", ""),
        }

    def _forward(self, raw: bytes, container: Json) -> Any:
        """POST the caller's body as it came to the container's predict route (pooled connections,
        as Vertex's frontends keep theirs to the model servers)."""
        import requests

        url = f"http://127.0.0.1:{container['port']}{container['predictRoute']}"
        try:
            response = self._http.post(url, data=raw, headers={"Content-Type": "application/json"},
                                       timeout=_PREDICT_TIMEOUT_S)
        except requests.RequestException as e:
            raise ApiError(503, "UNAVAILABLE", f"model server {container['deployedModelId']} failed: {e}") from e
        if response.status_code >= 400:
            code = response.status_code
            status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "INVALID_ARGUMENT",
                      429: "RESOURCE_EXHAUSTED"}.get(code, "UNAVAILABLE" if code >= 500 else "FAILED_PRECONDITION")
            raise ApiError(code, status, response.text[:2000])
        try:
            return response.json()
        except ValueError as e:
            raise ApiError(500, "INTERNAL", f"model server {container['deployedModelId']} answered no JSON") from e


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


def create_app(state_file: Path | None = None, *, images: Mapping[str, Sequence[str]] | None = None,
               operation_delay_s: float | None = None, deploy_timeout_s: float | None = None,
               log_dir: Path | None = None) -> Flask:
    """The WSGI app. With no arguments it reads `MLOPS_VERTEX_STATE` (state file; unset means memory
    only), `MLOPS_VERTEX_OPERATION_DELAY_S`, `MLOPS_VERTEX_DEPLOY_TIMEOUT_S`, `MLOPS_VERTEX_LOG_DIR`
    and `MLOPS_VERTEX_LOCAL_IMAGES`, which is how gunicorn starts it. The serving containers it
    starts are stopped when this process exits (and started again by the next one on the same state)."""
    if state_file is None and os.environ.get(STATE_ENV):
        state_file = Path(os.environ[STATE_ENV])
    api = VertexLocal(
        Store(state_file), images=LocalImages(images),
        operation_delay_s=float(os.environ.get(DELAY_ENV, "0")) if operation_delay_s is None else operation_delay_s,
        deploy_timeout_s=float(os.environ.get(DEPLOY_TIMEOUT_ENV, _DEFAULT_DEPLOY_TIMEOUT_S))
        if deploy_timeout_s is None else deploy_timeout_s,
        log_dir=log_dir or (Path(os.environ[LOG_DIR_ENV]) if os.environ.get(LOG_DIR_ENV) else None),
    )
    api.resume()
    atexit.register(api.close)
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
            return api.predict(project, location, endpoint, request.get_data())
        except ApiError as err:
            return _error_response(err)

    @app.get("/ui/<path:path>")
    def ui_operations(path: str) -> Any:
        # The generated REST transport's operations client lists `/ui/{name=...operations/*}` first
        # for endpoint operations: the SDK may poll there.
        try:
            if "/operations/" not in path:
                raise ApiError(404, "NOT_FOUND", f"the local Vertex AI server does not implement GET /ui/{path}")
            return api.dispatch(Request("GET", path, request.args.to_dict(), {}))
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
    parser.add_argument("--operation-delay", type=float, default=None,
                        help=f"seconds each long-running operation takes (default: ${DELAY_ENV}, else 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app(args.state, operation_delay_s=args.operation_delay)
    # threaded: the SDK may issue calls concurrently; the store's lock keeps them consistent.
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
