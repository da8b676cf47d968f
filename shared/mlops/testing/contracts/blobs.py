"""The contract of the blob-store port (`mlops.ports.blobs`), written once.

`BlobStoreContract` needs two fixtures: `blobs`, a store on an existing bucket of its own for each
test (empty), and `other_bucket`, the name of a second existing bucket. What is pinned is what the
Cloud Storage adapter does on gcp-storage-emulator, and what the spec store, the trainer's artifacts
and the predictor's deployment manifests rely on.
"""

from __future__ import annotations

import pytest

from mlops.ports.blobs import BlobNotFound, BlobStore, BucketNotFound

MISSING_BUCKET = "mlops-contract-no-such-bucket"


class BlobStoreContract:
    """Every BlobStore: objects by path or gs:// URI, listed by prefix, as Cloud Storage keeps them."""

    @pytest.fixture
    def blobs(self) -> BlobStore:
        raise NotImplementedError("a concrete contract test class provides the `blobs` fixture")

    @pytest.fixture
    def other_bucket(self) -> str:
        raise NotImplementedError("a concrete contract test class provides the `other_bucket` fixture")

    def test_it_implements_the_port(self, blobs: BlobStore) -> None:
        assert isinstance(blobs, BlobStore)

    def test_put_returns_the_gs_uri_and_get_reads_by_uri_or_path(self, blobs: BlobStore) -> None:
        uri = blobs.put("models/p/1/model.zip", b"model bytes", "application/zip")
        assert uri == f"gs://{blobs.bucket}/models/p/1/model.zip"
        assert blobs.get(uri) == b"model bytes"
        assert blobs.get("models/p/1/model.zip") == b"model bytes"
        assert blobs.get("/models/p/1/model.zip") == b"model bytes"  # a leading slash is not part of the name

    def test_bytes_come_back_exactly(self, blobs: BlobStore) -> None:
        every_byte = bytes(range(256)) * 4
        blobs.put("binary", every_byte)
        blobs.put("empty", b"")
        assert blobs.get("binary") == every_byte
        assert blobs.get("empty") == b""
        assert blobs.exists("empty")

    def test_a_missing_object_is_blob_not_found(self, blobs: BlobStore) -> None:
        with pytest.raises(BlobNotFound):
            blobs.get("no/such/object")
        with pytest.raises(BlobNotFound):
            blobs.get(f"gs://{blobs.bucket}/no/such/object")
        with pytest.raises(BlobNotFound):
            blobs.get(f"gs://{MISSING_BUCKET}/object")
        assert not blobs.exists("no/such/object")
        assert not blobs.exists(f"gs://{MISSING_BUCKET}/object")

    def test_exists_once_put(self, blobs: BlobStore) -> None:
        assert not blobs.exists("specs/p.yaml")
        uri = blobs.put("specs/p.yaml", b"name: p\n", "application/yaml")
        assert blobs.exists("specs/p.yaml") and blobs.exists(uri)
        assert not blobs.exists("specs/p")  # a prefix of a name is not an object

    def test_a_put_replaces_what_was_there(self, blobs: BlobStore) -> None:
        blobs.put("deployments/p.json", b'{"v": 1}')
        blobs.put("deployments/p.json", b'{"v": 2}')
        assert blobs.get("deployments/p.json") == b'{"v": 2}'
        assert blobs.list("deployments/") == ["deployments/p.json"]

    def test_list_is_sorted_and_matches_a_plain_prefix(self, blobs: BlobStore) -> None:
        for path in ("m/z", "m/a", "m/b/c", "mx", "m/B", "n/a"):
            blobs.put(path, path.encode())
        assert blobs.list("m/") == ["m/B", "m/a", "m/b/c", "m/z"]  # byte order, nested names included
        assert blobs.list("m") == ["m/B", "m/a", "m/b/c", "m/z", "mx"]  # a prefix, not a folder
        assert blobs.list("") == ["m/B", "m/a", "m/b/c", "m/z", "mx", "n/a"]
        assert blobs.list("nothing/") == []

    def test_delete_removes_one_object_and_a_missing_one_is_no_error(self, blobs: BlobStore) -> None:
        blobs.put("operations/open/deployer/e1", b"")
        blobs.put("operations/open/deployer/e10", b"")
        blobs.delete("operations/open/deployer/e1")
        assert blobs.list("operations/open/") == ["operations/open/deployer/e10"]
        blobs.delete("operations/open/deployer/e1")  # again: already gone
        blobs.delete(f"gs://{blobs.bucket}/operations/open/deployer/e10")
        assert blobs.list("operations/") == []

    def test_a_uri_in_another_bucket_is_that_buckets_object(self, blobs: BlobStore, other_bucket: str) -> None:
        uri = blobs.put(f"gs://{other_bucket}/m/elsewhere", b"there")
        blobs.put("m/here", b"here")
        assert uri == f"gs://{other_bucket}/m/elsewhere"
        assert blobs.get(uri) == b"there" and blobs.exists(uri)
        assert not blobs.exists("m/elsewhere")  # the same path in this bucket is another object
        assert blobs.list("m/") == ["m/here"]  # only this bucket is listed

    def test_a_put_into_a_bucket_that_does_not_exist_fails(self, blobs: BlobStore) -> None:
        with pytest.raises(BucketNotFound):
            blobs.put(f"gs://{MISSING_BUCKET}/object", b"x")
        assert not blobs.exists(f"gs://{MISSING_BUCKET}/object")
