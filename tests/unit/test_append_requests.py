"""How an append is cut into AppendRows requests: each under MAX_REQUEST_BYTES by its rows' own sizes
(BigQuery refuses a request over 10 MB), rows in order, none lost or repeated, in either format."""

from __future__ import annotations

import pyarrow as pa

from mlops.adapters import bigquery_storage
from mlops.adapters.bigquery_storage import _arrow_requests, _proto_requests

MiB = 1024 * 1024


def test_arrow_requests_follow_each_rows_size_not_the_mean():
    # An archive batch: small events beside megabyte-sized prediction.made payloads.
    sizes = [300, 3 * MiB, 200, 3 * MiB, 3 * MiB, 100, 5 * MiB, 400]
    table = pa.table({"data": pa.array(["x" * size for size in sizes]), "n": pa.array(range(len(sizes)), pa.int64())})
    requests = _arrow_requests(table)
    assert all(r.arrow_batch.nbytes <= bigquery_storage.MAX_REQUEST_BYTES for r in requests)
    assert sum(r.row_count for r in requests) == len(sizes)
    assert [n for r in requests for n in r.arrow_batch.column("n").to_pylist()] == list(range(len(sizes)))
    assert len(requests) == 3  # 6 MiB + ..., then 3 MiB + 100 B, then 5 MiB + 400 B: as full as they can be


def test_small_rows_go_in_one_request_and_no_rows_in_none():
    table = pa.table({"id": pa.array([f"r-{i}" for i in range(5000)]), "score": pa.array([0.5] * 5000)})
    assert [r.row_count for r in _arrow_requests(table)] == [5000]
    assert _arrow_requests(table.slice(0, 0)) == []


def test_one_row_over_the_limit_still_goes_alone_for_bigquery_to_refuse_by_name():
    table = pa.table({"data": pa.array(["x" * (9 * MiB), "y"])})
    assert [r.row_count for r in _arrow_requests(table)] == [1, 1]


def test_proto_requests_are_cut_the_same_way():
    rows = [b"x" * (3 * MiB), b"y" * 10, b"z" * (3 * MiB), b"w" * (3 * MiB)]
    requests = _proto_requests(rows)
    assert [r.row_count for r in requests] == [3, 1]
    assert [row for r in requests for row in r.proto_rows] == rows
