"""The event archive read tolerantly: a dead letter is never its claimed type, garbage never an error.

The warehouse is replaced by rows as the `events` table holds them (the SQL itself runs on bqemulator
in tests/e2e/test_faults.py); these tests pin how a row becomes an `ArchivedEvent`.
"""

from __future__ import annotations

import json
from typing import Any

from mlops.core.events import ModelDeployed, encode, new_envelope
from mlops.core.topology import archive_subscription
from mlops.ops.archive import archived_topic, query_events
from mlops.ops.lineage import lineage
from mlops.testing.memory import InMemoryModelRegistry


class Rows:
    """A SqlReader that answers every query with the same rows (newest first) and records the SQL."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def qualified(self, table: str, dataset: str | None = None) -> str:
        return f"p.{dataset or 'mlops'}.{table}"

    def table_columns(self, table: str) -> list[tuple[str, str]] | None:
        return None

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.queries.append((sql, dict(params or {})))
        return self.rows


def row(subscription: str, attributes: Any, data: Any, message_id: str = "1") -> dict[str, Any]:
    return {"subscription_name": subscription, "message_id": message_id, "publish_time": "2026-12-01 10:00:00+00:00",
            "attributes": attributes if isinstance(attributes, str) or attributes is None else json.dumps(attributes),
            "data": data}


def deployed_row(message_id: str = "1") -> dict[str, Any]:
    event = ModelDeployed.example()
    attributes = new_envelope(event, "deployer", run_id="run-1").to_attributes()
    return row(archive_subscription("model.deployed.v1"), attributes, encode(event).decode(), message_id)


def test_a_poison_message_with_a_real_ce_type_is_archived_as_a_dead_letter():
    claimed = {"ce-id": "poison-1", "ce-type": "model.deployed.v1", "ce-source": "x", "pipeline": "p",
               "dead_letter_reason": "EventValidationError: ..."}
    [event] = query_events(Rows([row(archive_subscription("mlops.dead-letter"), claimed, '{"not": "a deployment"}')]),
                           dead_letters=True)
    assert event.type == "mlops.dead-letter" and event.is_dead_letter and not event.valid
    assert event.attributes["ce-type"] == "model.deployed.v1", "the original attributes are kept, as evidence"
    assert event.payload() == {"not": "a deployment"}


def test_the_type_is_the_topic_even_from_a_subscription_resource_name():
    assert archived_topic("projects/p/subscriptions/model.deployed.v1--archive") == "model.deployed.v1"
    assert archived_topic("model.deployed.v1--archive") == "model.deployed.v1"
    assert archived_topic("something-else") is None


def test_a_type_filter_selects_by_topic_and_dead_letters_are_left_out_unless_asked_for():
    reader = Rows([])
    query_events(reader, event_type="model.deployed.v1")
    sql, params = reader.queries[-1]
    assert params["subscription"] == "model.deployed.v1--archive" and "ce-type" not in sql
    query_events(reader)
    sql, params = reader.queries[-1]
    assert "NOT (COALESCE(subscription_name, '') = @dead_letters" in sql
    assert params["dead_letters"] == "mlops.dead-letter--archive"
    query_events(reader, dead_letters=True)
    assert "dead_letters" not in reader.queries[-1][1]


def test_garbage_in_any_column_makes_an_event_without_a_payload_never_an_error():
    garbage = [
        row("x", "not json", "{"),
        row("x", "[1, 2]", "[1, 2]", "2"),
        row("x", {"ce-id": 7, "ce-type": ["a"], "run_id": None}, None, "3"),
        row(archive_subscription("model.deployed.v1"), None, "[" * 100_000, "4"),
        row(archive_subscription("model.deployed.v1"), {"ce-id": "big"}, '{"n": ' + "9" * 5000 + "}", "5"),
        {"subscription_name": None, "message_id": None, "publish_time": None, "attributes": None, "data": None},
    ]
    events = query_events(Rows(garbage), dead_letters=True)
    assert len(events) == len(garbage)
    for event in events:
        assert isinstance(event.payload(), dict) and isinstance(event.as_dict(), dict)
        assert isinstance(event.id, str) and isinstance(event.run_id, str)
        assert not event.valid


def test_lineage_skips_archived_garbage_among_deployments():
    registry = InMemoryModelRegistry()
    registry.register_version("breast-cancer", "breast-cancer", "gs://b/models/breast-cancer/c/", "img",
                              {"run_id": "run-1"}, [])
    bad = row(archive_subscription("model.deployed.v1"), {"ce-id": "bad", "ce-type": "model.deployed.v1",
                                                           "pipeline": "breast-cancer", "run_id": "run-1"},
              '{"deployed_models": "nope"}', "9")
    report = lineage(registry, Rows([bad, deployed_row()]), "breast-cancer", "1")
    assert report["version"] == "1"
    assert all(d["event_id"] != "bad" for d in report["deployments"])
