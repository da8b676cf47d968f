"""Read-only adapters over the Google REST APIs themselves, for the operator's read commands.

`mlops models`, `events`, `lineage` and `pipeline list` only read: a query, a registry listing, a
spec file. The client libraries take 1-4 s to import (google-cloud-aiplatform alone 2.5 s, measured
in docs/performance.md) for calls that take 20-100 ms; a user runs these commands in a loop. These
classes speak the same documented JSON APIs with one `requests` session, so a read command starts in
a fraction of a second. They answer exactly as the full adapters do for the methods they have
(`tests/integration/test_rest_readers.py` compares them on the emulators), and they have no write
method: everything that changes state goes through the full adapters.

Locally the endpoints are the emulators' (the settings' `bigquery_emulator_host`,
`storage_emulator_host`, `vertex_endpoint`) without credentials; in the cloud, Google's, with
application default credentials.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from mlops.ports.blobs import BlobNotFound, split_uri
from mlops.ports.registry import ModelVersion, NotFoundError, check_model_id
from mlops.ports.warehouse import Row, TableNotFound, WarehouseError, standard_type

TIMEOUT_S = 30.0
QUERY_WAIT_MS = 10_000


def rest_session(local: bool) -> requests.Session:
    """A plain session for the emulators; an authorized one (application default credentials) for
    Google's endpoints."""
    if local:
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


def _utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check(response: requests.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            message = response.json().get("error", {}).get("message") or response.text
        except ValueError:
            message = response.text
        raise _HttpError(response.status_code, f"{what}: HTTP {response.status_code}: {message[:500]}")
    return response.json() if response.content else {}


class _HttpError(WarehouseError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------ BigQuery

def _param(name: str, value: Any) -> dict[str, Any]:
    """A named query parameter, typed as the BigQuery adapter types it."""
    if isinstance(value, datetime):
        kind, text = "TIMESTAMP", value.isoformat()
    elif isinstance(value, bool):
        kind, text = "BOOL", "true" if value else "false"
    elif isinstance(value, int):
        kind, text = "INT64", str(value)
    elif isinstance(value, float):
        kind, text = "FLOAT64", repr(value)
    else:
        kind, text = "STRING", str(value)
    return {"name": name, "parameterType": {"type": kind}, "parameterValue": {"value": text}}


def _cell(value: Any, kind: str) -> Any:
    """A value of the JSON wire format as the client library returns it (the port's typing)."""
    if value is None:
        return None
    kind = standard_type(kind)
    if kind == "INT64":
        return int(value)
    if kind == "FLOAT64":
        return float(value)
    if kind == "BOOL":
        return value in (True, "true", "TRUE")
    if kind == "TIMESTAMP":
        # Microseconds since the epoch with useInt64Timestamp; older servers send float seconds.
        text = str(value)
        if "." in text or "e" in text.lower():
            return datetime.fromtimestamp(float(text), UTC)
        return datetime.fromtimestamp(int(text) / 1_000_000, UTC)
    return value


class BigQueryReader:
    """The read side of `SqlWarehouse`: `query`, `table_columns`, `qualified`."""

    def __init__(self, session: requests.Session, project: str, dataset: str, snapshot_dataset: str,
                 base_url: str | None = None):
        self._http = session
        self.project = project
        self.dataset = dataset
        self.snapshot_dataset = snapshot_dataset
        host = base_url or "https://bigquery.googleapis.com"
        self._base = f"{host.rstrip('/')}/bigquery/v2/projects/{project}"

    def qualified(self, table: str, dataset: str | None = None) -> str:
        if table.count(".") == 2:
            return table
        return f"{self.project}.{dataset or self.dataset}.{table}"

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        project, dataset, name = self.qualified(table).split(".")
        response = self._http.get(f"{self._base.rsplit('/projects/', 1)[0]}/projects/{project}/datasets/{dataset}"
                                  f"/tables/{name}", timeout=TIMEOUT_S)
        if response.status_code == 404:
            return None
        fields = _check(response, table).get("schema", {}).get("fields", [])
        return [(f["name"], standard_type(f["type"])) for f in fields]

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """One `jobs.query` round trip for a small result (further pages when there are any)."""
        body: dict[str, Any] = {
            "query": sql, "useLegacySql": False, "timeoutMs": QUERY_WAIT_MS,
            "formatOptions": {"useInt64Timestamp": True},
        }
        if params:
            body["parameterMode"] = "NAMED"
            body["queryParameters"] = [_param(k, v) for k, v in params.items()]
        answer = self._answer(self._http.post(f"{self._base}/queries", json=body, timeout=TIMEOUT_S), sql)
        job = answer.get("jobReference", {})
        while not answer.get("jobComplete", True):
            answer = self._results(job, None, sql)
        fields = answer.get("schema", {}).get("fields", [])
        rows = [self._row(r, fields) for r in answer.get("rows", [])]
        token = answer.get("pageToken")
        while token:
            page = self._results(job, token, sql)
            rows += [self._row(r, fields) for r in page.get("rows", [])]
            token = page.get("pageToken")
        return rows

    def _answer(self, response: requests.Response, sql: str) -> dict[str, Any]:
        try:
            return _check(response, "query")
        except _HttpError as error:
            if error.status == 404:
                raise TableNotFound(str(error)) from None
            raise

    def _results(self, job: dict[str, Any], token: str | None, sql: str) -> dict[str, Any]:
        params: dict[str, Any] = {"timeoutMs": QUERY_WAIT_MS, "formatOptions.useInt64Timestamp": "true"}
        if job.get("location"):
            params["location"] = job["location"]
        if token:
            params["pageToken"] = token
        response = self._http.get(f"{self._base}/queries/{job['jobId']}", params=params, timeout=TIMEOUT_S)
        return self._answer(response, sql)

    @staticmethod
    def _row(row: dict[str, Any], fields: list[dict[str, Any]]) -> Row:
        return {f["name"]: _cell(cell.get("v"), f["type"]) for f, cell in zip(fields, row["f"])}


# ------------------------------------------------------------------------------------ Vertex AI

class VertexRegistryReader:
    """The read side of `ModelRegistry`: `list_versions`, `get_version`."""

    def __init__(self, session: requests.Session, project: str, location: str, api_endpoint: str | None = None):
        self._http = session
        host = (api_endpoint or f"https://{location}-aiplatform.googleapis.com").rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        self._base = f"{host}/v1/projects/{project}/locations/{location}/models"

    def list_versions(self, model_id: str) -> list[ModelVersion]:
        url = f"{self._base}/{check_model_id(model_id)}:listVersions"
        versions: list[ModelVersion] = []
        token = ""
        while True:
            response = self._http.get(url, params={"pageToken": token} if token else None, timeout=TIMEOUT_S)
            if response.status_code == 404:
                return []
            page = _check(response, f"model {model_id}")
            versions += [_version(m) for m in page.get("models", [])]
            token = page.get("nextPageToken", "")
            if not token:
                break
        return sorted(versions, key=lambda v: int(v.version_id), reverse=True)

    def get_version(self, model_id: str, version: str) -> ModelVersion:
        response = self._http.get(f"{self._base}/{check_model_id(model_id)}@{quote(version, safe='')}",
                                  timeout=TIMEOUT_S)
        if response.status_code in (400, 404):
            raise NotFoundError(f"no version {version!r} of model {model_id!r}")
        return _version(_check(response, f"model {model_id}@{version}"))


def _version(model: dict[str, Any]) -> ModelVersion:
    base = model["name"].partition("@")[0]
    created = model.get("versionCreateTime") or model.get("createTime")
    return ModelVersion(
        model_id=base.rsplit("/", 1)[-1],
        version_id=str(model["versionId"]),
        resource_name=f"{base}@{model['versionId']}",
        display_name=model.get("displayName", ""),
        artifact_uri=model.get("artifactUri", ""),
        labels=dict(model.get("labels", {})),
        aliases=tuple(model.get("versionAliases", [])),
        create_time=_utc(created) if created else datetime.fromtimestamp(0, UTC),
        description=model.get("versionDescription") or model.get("description") or "",
    )


# ------------------------------------------------------------------------------ Cloud Storage

class GcsReader:
    """The read side of `BlobStore`: `get`, `exists`, `list` (`put`, `delete` refuse: this reader only reads)."""

    def __init__(self, session: requests.Session, bucket: str, base_url: str | None = None):
        self._http = session
        self.bucket = bucket
        host = base_url or "https://storage.googleapis.com"
        self._base = f"{host.rstrip('/')}/storage/v1/b"

    def put(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        raise NotImplementedError("GcsReader only reads: write through the blob store adapter")

    def delete(self, uri_or_path: str) -> None:
        raise NotImplementedError("GcsReader only reads: delete through the blob store adapter")

    def get(self, uri_or_path: str) -> bytes:
        bucket, path = split_uri(uri_or_path, self.bucket)
        response = self._http.get(f"{self._base}/{bucket}/o/{quote(path, safe='')}", params={"alt": "media"},
                                  timeout=TIMEOUT_S)
        if response.status_code == 404:
            raise BlobNotFound(f"gs://{bucket}/{path}")
        _check_media(response, f"gs://{bucket}/{path}")
        return response.content

    def exists(self, uri_or_path: str) -> bool:
        bucket, path = split_uri(uri_or_path, self.bucket)
        response = self._http.get(f"{self._base}/{bucket}/o/{quote(path, safe='')}", timeout=TIMEOUT_S)
        if response.status_code == 404:
            return False
        _check(response, f"gs://{bucket}/{path}")
        return True

    def list(self, prefix: str) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            params = {"prefix": prefix, **({"pageToken": token} if token else {})}
            response = self._http.get(f"{self._base}/{self.bucket}/o", params=params, timeout=TIMEOUT_S)
            if response.status_code == 404:
                return []
            page = _check(response, f"gs://{self.bucket}/{prefix}")
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)


def _check_media(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise _HttpError(response.status_code, f"{what}: HTTP {response.status_code}: {response.text[:500]}")
