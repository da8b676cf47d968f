"""The read-only REST adapters (`mlops.adapters.rest`) answer exactly as the full adapters do.

The CLI's read commands use them to start fast; what they return must not differ from what the
client libraries return for the same query, listing or version, on the same emulators.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from mlops.adapters.rest import BigQueryReader, GcsReader, VertexRegistryReader
from mlops.core.sql import quote_qualified
from mlops.ports.blobs import BlobNotFound
from mlops.ports.registry import NotFoundError
from tests.integration.harness import serving, unique_project

pytestmark = pytest.mark.integration


def test_queries_come_back_typed_as_the_bigquery_client_types_them(bigquery_emulator):
    from mlops.adapters.bigquery import BigQueryWarehouse, bigquery_client
    from mlops.stack.provision import provision_bigquery

    project = unique_project()
    full = BigQueryWarehouse(bigquery_client(project, bigquery_emulator.endpoint), project, "mlops", "mlops_snapshots")
    provision_bigquery(full)
    full.ensure_table("t", [("s", "STRING", "NULLABLE"), ("i", "INT64", "NULLABLE"), ("f", "FLOAT64", "NULLABLE"),
                            ("b", "BOOL", "NULLABLE"), ("ts", "TIMESTAMP", "NULLABLE")])
    stamp = datetime(2026, 11, 22, 6, 0, 1, 250000, tzinfo=UTC)
    full.insert_rows("t", [{"s": "x", "i": 3, "f": 1.5, "b": True, "ts": stamp},
                           {"s": "y", "i": None, "f": None, "b": False, "ts": None}])
    reader = BigQueryReader(requests.Session(), project, "mlops", "mlops_snapshots", bigquery_emulator.endpoint)

    sql = f"SELECT * FROM {quote_qualified(full.qualified('t'))} WHERE s != @skip AND ts IS NULL OR i >= @least ORDER BY s"
    params = {"skip": "z", "least": 2}
    assert reader.query(sql, params) == full.query(sql, params)
    assert reader.query(sql, params)[0]["ts"] == stamp
    assert reader.table_columns("t") == full.table_columns("t")
    assert reader.table_columns("absent") is None
    assert reader.qualified("t") == full.qualified("t")


@pytest.fixture(scope="module")
def vertex_url() -> Iterator[str]:
    from mlops.stack.vertex_local import create_app

    with serving(create_app(None)) as url:
        yield url


def test_registry_versions_read_over_rest_equal_the_sdks(vertex_url):
    from mlops.adapters.vertex import VertexModelRegistry

    project = unique_project()
    registry = VertexModelRegistry(project, "us-central1", api_endpoint=vertex_url)
    for number in range(2):
        registry.register_version("m", "m model", f"gs://artifacts/m/{number}/", "mlops-predictor:latest", {"status": "rejected"},
                                  ["champion"] if number else [], json.dumps({"decision": "reject"}))
    reader = VertexRegistryReader(requests.Session(), project, "us-central1", vertex_url)

    assert reader.list_versions("m") == registry.list_versions("m")
    assert reader.get_version("m", "2") == registry.get_version("m", "2")
    assert reader.list_versions("absent") == []
    with pytest.raises(NotFoundError):
        reader.get_version("m", "9")


def test_blobs_read_over_rest_equal_the_storage_clients(storage_emulator):
    from mlops.adapters.gcs import GcsBlobStore, storage_client

    store = GcsBlobStore(storage_client("rest-project", storage_emulator.endpoint), f"b-{uuid.uuid4().hex[:10]}")
    store.ensure_bucket("US")
    store.put("specs/a.yaml", b"name: a\n")
    store.put("specs/b c.yaml", b"\xff\x00")
    store.put("other/x", b"x")
    reader = GcsReader(requests.Session(), store.bucket, storage_emulator.endpoint)

    assert reader.list("specs/") == store.list("specs/") == ["specs/a.yaml", "specs/b c.yaml"]
    assert reader.get("specs/b c.yaml") == store.get("specs/b c.yaml") == b"\xff\x00"
    assert reader.exists("specs/a.yaml") and not reader.exists("specs/none")
    with pytest.raises(BlobNotFound):
        reader.get("specs/none")
