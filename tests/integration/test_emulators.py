"""The emulators start, answer the official clients, and stop without leaving a process behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials

from mlops.stack import emulators as emu
from mlops.stack.emulators import (
    DEFAULT_PROJECT,
    BigQueryEmulator,
    Emulator,
    EmulatorNotInstalled,
    PortInUse,
    PubSubEmulator,
    StorageEmulator,
)
from mlops.stack.processes import group_alive, group_members, pid_alive

pytestmark = pytest.mark.integration

OFFLINE_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, every download fails fast
# The BigQuery client retries failed calls for 10 minutes by default; fail a broken test fast instead.
SHORT_RETRY = Retry(deadline=30)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains text (e.g. a port flag)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def assert_fully_stopped(emulator: Emulator) -> None:
    assert not emulator.healthy()
    assert not pid_alive(emulator.pid)
    assert not group_alive(emulator.pid)
    assert processes_mentioning(f"--port={emulator.port}") == []  # no stray JVM (Pub/Sub)
    assert processes_mentioning(f"--port {emulator.port}") == []
    assert processes_mentioning(f"--rest-port {emulator.port}") == []


# --------------------------------------------------------------------------- the official clients


def test_pubsub_topic_publish_pull(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import pubsub_v1

    for key, value in pubsub_emulator.env().items():
        monkeypatch.setenv(key, value)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(DEFAULT_PROJECT, unique("topic"))
    subscription = subscriber.subscription_path(DEFAULT_PROJECT, unique("sub"))
    try:
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        publisher.publish(topic, b"hello", origin="test").result(timeout=30)

        response = subscriber.pull(subscription=subscription, max_messages=1, timeout=30)

        assert [m.message.data for m in response.received_messages] == [b"hello"]
        assert response.received_messages[0].message.attributes["origin"] == "test"
        subscriber.acknowledge(subscription=subscription, ack_ids=[response.received_messages[0].ack_id])
    finally:
        subscriber.close()
        publisher.stop()


def test_bigquery_dataset_table_insert_query(bigquery_emulator: BigQueryEmulator) -> None:
    from google.cloud import bigquery

    client = bigquery.Client(
        project=DEFAULT_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_emulator.env()["BIGQUERY_EMULATOR_HOST"]),
    )
    dataset = client.create_dataset(unique("ds"), timeout=30, retry=SHORT_RETRY)
    table = client.create_table(
        bigquery.Table(
            f"{DEFAULT_PROJECT}.{dataset.dataset_id}.rows",
            schema=[bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("label", "STRING")],
        ),
        timeout=30,
        retry=SHORT_RETRY,
    )

    rows_in = [{"id": 1, "label": "a"}, {"id": 2, "label": "b"}]
    errors = client.insert_rows_json(table, rows_in, timeout=30, retry=SHORT_RETRY)
    assert errors == []

    rows = client.query(f"SELECT id, label FROM `{table.full_table_id.replace(':', '.')}` ORDER BY id").result(
        timeout=30
    )
    assert [(row.id, row.label) for row in rows] == [(1, "a"), (2, "b")]


def test_storage_bucket_upload_download(storage_emulator: StorageEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import storage

    for key, value in storage_emulator.env().items():
        monkeypatch.setenv(key, value)
    client = storage.Client(project=DEFAULT_PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    bucket = client.create_bucket(unique("bucket").replace("_", "-"))
    bucket.blob("models/a.bin").upload_from_string(b"\x00weights")

    assert client.bucket(bucket.name).blob("models/a.bin").download_as_bytes() == b"\x00weights"
    assert [blob.name for blob in client.list_blobs(bucket.name)] == ["models/a.bin"]


def test_emulator_env_sets_the_four_variables(emulator_env: dict[str, str]) -> None:
    import os

    assert set(emulator_env) == {"PUBSUB_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "BIGQUERY_STORAGE_EMULATOR_HOST",
                                 "STORAGE_EMULATOR_HOST"}
    assert os.environ["PUBSUB_EMULATOR_HOST"].startswith("127.0.0.1:")
    assert os.environ["BIGQUERY_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert os.environ["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert os.environ["BIGQUERY_STORAGE_EMULATOR_HOST"].startswith("127.0.0.1:")


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("cls", [PubSubEmulator, BigQueryEmulator, StorageEmulator], ids=lambda c: c.name)
def test_start_answer_stop_leaves_nothing(cls: type[Emulator], tmp_path: Path) -> None:
    with cls.start(tmp_path / cls.name) as emulator:
        assert emulator.healthy()
        assert cls.probe(emulator.port)
        members = group_members(emulator.pid)
        assert emulator.pid in members
    assert_fully_stopped(emulator)
    assert not any(pid_alive(pid) for pid in members)


def test_stop_pid_from_another_process_stops_the_pubsub_jvm(tmp_path: Path) -> None:
    """A supervisor keeps only the PID in a state file and stops the emulator from elsewhere."""
    emulator = PubSubEmulator.start(tmp_path)
    try:
        code = (
            "from mlops.stack.processes import stop_pid; "
            f"raise SystemExit(0 if stop_pid({emulator.pid}, expect_in_cmdline='pubsub') else 1)"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert not PubSubEmulator.probe(emulator.port)
        assert processes_mentioning(f"--port={emulator.port}") == []
    finally:
        emulator.stop()
    assert_fully_stopped(emulator)


def test_bigquery_starts_offline_and_keeps_data_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import bigquery

    # Any download attempt by the emulator (DuckDB extensions) now fails at once; only
    # local traffic (our client talking to the emulator) still goes direct.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, OFFLINE_PROXY)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    data_dir = tmp_path / "bq"

    with BigQueryEmulator.start(data_dir) as first:
        client = bigquery.Client(
            project=DEFAULT_PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=first.env()["BIGQUERY_EMULATOR_HOST"]),
        )
        client.create_dataset("kept", timeout=30, retry=SHORT_RETRY)
    assert list(first.home.glob(".duckdb/extensions/*/*/spatial.duckdb_extension"))
    assert "Failed to download" not in first.log_path.read_text()

    with BigQueryEmulator.start(data_dir) as second:
        client = bigquery.Client(
            project=DEFAULT_PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=second.env()["BIGQUERY_EMULATOR_HOST"]),
        )
        assert "kept" in [d.dataset_id for d in client.list_datasets(timeout=30, retry=SHORT_RETRY)]
    assert_fully_stopped(second)


def test_launch_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(PortInUse):
            StorageEmulator(tmp_path, port=sock.getsockname()[1]).launch()


def test_missing_pubsub_emulator_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(emu.PUBSUB_OVERRIDE_ENV, str(tmp_path / "nowhere"))
    emu.find_pubsub_emulator.cache_clear()
    try:
        with pytest.raises(EmulatorNotInstalled, match="pubsub-emulator"):
            emu.find_pubsub_emulator()
    finally:
        emu.find_pubsub_emulator.cache_clear()


def test_pubsub_emulator_is_found_from_the_cloud_sdk() -> None:
    launcher = emu.find_pubsub_emulator()
    assert launcher.name == "cloud-pubsub-emulator"
    assert launcher.is_file()
