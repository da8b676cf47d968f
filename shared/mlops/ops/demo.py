"""`mlops demo`: a real dataset played into BigQuery batch by batch while the loop runs by itself.

The demo only does what a user (or a daily load job) would: apply a spec, land rows, send
prediction traffic, land late labels. Everything else (snapshots, training, gating, registering,
deploying, logging predictions) happens in the services, triggered by events. The demo watches
the registry and the pipeline's Vertex AI endpoint (locally the stand-in, each deployed version its
own serving process) to report progress and timings; its predictions go through the endpoint.

With a canary share (`run_demo(canary_percent=20)`, `mlops demo --canary 20`) each new champion first
takes that share of the traffic; the closing note counts, per round, the predictions in BigQuery by
the model version that answered.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from mlops.core.events import Decision, TickReason
from mlops.core.spec import PipelineSpec, parse_spec
from mlops.core.sql import quote_qualified
from mlops.core.topology import PREDICTIONS_TABLE
from mlops.ml.datasets import load_demo_dataset
from mlops.ops.context import CliContext
from mlops.ops.errors import NotReachable, RunFailed
from mlops.ops.ingest import ingest_labels, ingest_rows
from mlops.ops.reset import reset
from mlops.ops.serving import EndpointClient
from mlops.ops.ticks import publish_tick
from mlops.ports.registry import VersionMeta
from mlops.stack.supervisor import Stack

# The demo's own folder: `make demo` resets it at the start (and says so), so every run starts
# empty and plays the same rounds; a user's `.mlops/` is never touched by it.
DEMO_DATA_DIR = Path(".mlops-demo")
DEMO_PIPELINE = "abalone"

DEMO_BATCHES = (800, 400, 500, 700, 900, 577)
# The last rows are never landed as data: they are the production traffic, and half of them get
# their true label later (`mlops ingest --labels`), which the next round trains on.
TRAFFIC_ROWS = 300
PREDICTIONS_PER_ROUND = 100
ROUND_TIMEOUT_S = 90.0

DEMO_SPEC = """
name: abalone
source:
  table: abalone
  label: rings_above_9
  features: [sex, length, diameter, height, whole_weight, shucked_weight, viscera_weight, shell_weight]
model:
  type: BOOSTED_TREE_CLASSIFIER
  options: {max_iterations: 30, learn_rate: 0.1, max_tree_depth: 4,
            data_split_method: RANDOM, data_split_eval_fraction: 0.2}
  seed: 42
retrain:
  new_rows_fraction: 0.15
  schedule_seconds: 600
promotion:
  metric: roc_auc
  minimum: 0.8
  min_gain: 0.003
deployment:
  canary_percent: 0
"""


def demo_spec(name: str = DEMO_PIPELINE) -> PipelineSpec:
    """The demo's spec, under another pipeline name (and table) when `abalone` is taken."""
    text = DEMO_SPEC.replace(f"name: {DEMO_PIPELINE}", f"name: {name}") \
                    .replace(f"table: {DEMO_PIPELINE}", f"table: {name.replace('-', '_')}")
    return parse_spec(text, "demo spec")


def free_pipeline_name(taken: Sequence[str], base: str = DEMO_PIPELINE) -> str:
    """`abalone`, or the first of `abalone-2`, `abalone-3`, ... no pipeline has yet."""
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def write_demo_csvs(folder: Path) -> list[Path]:
    """The demo's batches as CSV files, exactly what `mlops ingest --csv` takes (handy to try by hand)."""
    data = load_demo_dataset()
    columns = ["_row_id", *data.feature_columns, data.label_column]
    folder.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for number, size in enumerate(DEMO_BATCHES, 1):
        path = folder / f"batch-{number}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows({c: row[c] for c in columns} for row in data.rows[start:start + size])
        paths.append(path)
        start += size
    return paths


class LoopWatcher:
    """Observes what the loop did, through the same public surfaces a user has."""

    def __init__(self, ctx, spec: PipelineSpec):
        self.ctx = ctx
        self.spec = spec
        self.endpoint = EndpointClient(ctx.settings)

    def versions(self) -> dict[str, Any]:
        return {v.version_id: v for v in self.ctx.registry.list_versions(self.spec.model_id)}

    def serving(self) -> dict[str, int]:
        """Model version -> its share of the endpoint's traffic."""
        try:
            return self.endpoint.split(self.spec.endpoint_name)
        except NotReachable:
            return {}

    def wait_new_version(self, known: set[str], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = {k: v for k, v in self.versions().items() if k not in known}
            if fresh:
                return max(fresh.values(), key=lambda v: int(v.version_id))
            time.sleep(0.05)
        raise RunFailed(f"no new model version of {self.spec.name} within {timeout:.0f} s; "
                        f"`mlops events --type stage.failed --data-dir {self.ctx.data_dir}` shows failures, "
                        f"the logs are in {self.ctx.data_dir}/logs")

    def wait_serving(self, version_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serving().get(version_id, 0) > 0:
                return
            time.sleep(0.02)
        raise RunFailed(f"version {version_id} of {self.spec.name} was not serving within {timeout:.0f} s; see "
                        f"the logs in {self.ctx.data_dir}/logs")

    def send_predictions(self, rows: Sequence[dict[str, Any]], run_tag: str) -> list[str]:
        features = self.spec.source.features

        def one(index_row: tuple[int, dict[str, Any]]) -> str | None:
            index, row = index_row
            request_id = f"{run_tag}-{index}"
            # Through the endpoint, which forwards the body and nothing else: the id goes in the body.
            status, _ = self.endpoint.predict(self.spec.endpoint_name, {
                "instances": [{f: row[f] for f in features}], "parameters": {"request_id": request_id}}, timeout=10)
            return request_id if status == 200 else None

        with ThreadPoolExecutor(max_workers=4) as pool:
            return [rid for rid in pool.map(one, enumerate(rows)) if rid]

    def by_version(self, run_tag: str) -> dict[str, int]:
        """Predictions in BigQuery whose request id starts with `run_tag`, by the version that answered."""
        rows = self.ctx.warehouse.query(
            f"SELECT model_version, COUNT(DISTINCT request_id) AS n FROM "
            f"{quote_qualified(self.ctx.warehouse.qualified(PREDICTIONS_TABLE))} "
            "WHERE pipeline = @pipeline AND STARTS_WITH(request_id, @tag) GROUP BY model_version",
            {"pipeline": self.spec.name, "tag": run_tag})
        return {str(r["model_version"]): int(r["n"]) for r in rows}

    def logged(self, request_ids: Sequence[str]) -> int:
        rows = self.ctx.warehouse.query(
            f"SELECT COUNT(DISTINCT request_id) AS n FROM {quote_qualified(self.ctx.warehouse.qualified(PREDICTIONS_TABLE))} "
            "WHERE pipeline = @pipeline", {"pipeline": self.spec.name})
        return int(rows[0]["n"])


def run_demo(data_dir: Path | None = None, keep: bool = False, console: Console | None = None,
             canary_percent: int = 0) -> dict[str, Any]:
    """Play the demo. With no `data_dir` it runs in its own folder, reset first (announced); in a
    folder of the user's, nothing is deleted and a taken pipeline name gets a suffix. `canary_percent`
    is the spec's `deployment.canary_percent`."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    if data_dir is None:
        data_dir = DEMO_DATA_DIR
        if data_dir.exists():
            console.print(f"starting from clean state: removing the previous demo's stack and data in {data_dir}/ "
                          "(the demo's own folder)")
            reset(data_dir)
    stack = Stack(data_dir)
    already_up = stack.status()["up"]
    with console.status("starting the local stack (emulators, Vertex stand-in, services)..."):
        try:
            stack.up()
        except RuntimeError as error:  # a component that would not start: its log says why
            raise NotReachable(f"the local stack did not start: {error}") from None
    console.print(f"stack up in {time.monotonic() - started:.1f} s ({data_dir})")
    rounds: list[dict[str, Any]] = []
    try:
        ctx = CliContext(data_dir)
        spec = demo_spec(free_pipeline_name(ctx.specs.names()))
        if canary_percent:
            spec = spec.model_copy(update={"deployment": spec.deployment.model_copy(
                update={"canary_percent": canary_percent})})
        if spec.name != DEMO_PIPELINE:
            console.print(f"pipeline {DEMO_PIPELINE} already exists in {data_dir}: this run is pipeline {spec.name}")
        ctx.specs.put(spec)
        data = load_demo_dataset()
        console.print(f"dataset: {data.description.splitlines()[0]} ({len(data.rows)} rows)")
        watcher = LoopWatcher(ctx, spec)
        sent: list[str] = []
        position = 0
        for number, size in enumerate(DEMO_BATCHES, 1):
            batch = data.rows[position:position + size]
            position += size
            known = set(watcher.versions())
            landed = time.monotonic()
            ingest_rows(ctx.warehouse, spec, batch)
            publish_tick(ctx.bus, spec.name, TickReason.DATA_LANDED, source="demo")
            version = watcher.wait_new_version(known, ROUND_TIMEOUT_S)
            registered_s = time.monotonic() - landed
            meta = VersionMeta.of(version)
            serving_s = None
            if meta.decision == Decision.PROMOTE:
                watcher.wait_serving(version.version_id, ROUND_TIMEOUT_S)
                serving_s = time.monotonic() - landed
            round_ = {
                "round": number, "rows_landed": size, "total_rows": position,
                "data_version": version.labels.get("data_version", ""), "version": version.version_id,
                "decision": meta.decision, "reason": meta.reason,
                "roc_auc": meta.metrics.get("roc_auc"), "champion_roc_auc": meta.champion_metrics.get("roc_auc"),
                "landed_to_registered_s": round(registered_s, 2),
                "landed_to_serving_s": round(serving_s, 2) if serving_s else None,
            }
            rounds.append(round_)
            style = "green" if meta.decision == Decision.PROMOTE else "yellow"
            console.print(f"round {number}: {size} rows landed -> v{version.version_id} [{style}]{meta.decision}[/{style}]"
                          f" ({meta.reason}) in {registered_s:.1f} s")
            # Traffic on whatever serves now; then the truth for half of it arrives late, as labels.
            offset = (number - 1) * PREDICTIONS_PER_ROUND % TRAFFIC_ROWS
            traffic = data.rows[-TRAFFIC_ROWS:][offset:offset + PREDICTIONS_PER_ROUND]
            # Request ids are the join key of late labels, and labelled rows join training (row id
            # `label-<request id>`, hashed into the split): fixed ids keep the demo reproducible.
            ids = watcher.send_predictions(traffic, f"demo-round{number}")
            sent.extend(ids)
            labels = [{"request_id": rid, spec.source.label: row[spec.source.label]}
                      for rid, row in list(zip(ids, traffic))[: len(ids) // 2]]
            ingest_labels(ctx.warehouse, spec.name, labels, spec.source.label)
        deadline = time.monotonic() + 60
        while watcher.logged(sent) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
        logged = watcher.logged(sent)
        for round_ in rounds:
            round_["predictions_by_version"] = watcher.by_version(f"demo-round{round_['round']}-")
        summary = {
            "ok": logged == len(sent) and any(r["decision"] == Decision.PROMOTE for r in rounds)
                  and any(r["decision"] == Decision.REJECT for r in rounds) and len(rounds) >= 3,
            "pipeline": spec.name, "rounds": rounds,
            "predictions_sent": len(sent), "predictions_logged": logged,
            "serving": watcher.serving(), "seconds": round(time.monotonic() - started, 1),
            "canary_percent": spec.deployment.canary_percent,
        }
        print_summary(console, summary)
        return summary
    finally:
        if not keep and not already_up:
            stack.down()
            console.print(f"stack stopped (use --keep to leave it running; `mlops reset --data-dir {data_dir}` "
                          "deletes its data)")


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    # Short headers and no vertical rules: the table fits 80 columns without cutting a cell.
    table = Table("round", "rows", "data", "v", "decision", "roc_auc", "champion", "registered", "serving",
                  title=f"mlops demo: {summary['pipeline']} (seconds from landing to registered / serving)",
                  box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_edge=False)
    for r in summary["rounds"]:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
        table.add_row(str(r["round"]), str(r["total_rows"]), r["data_version"], r["version"], r["decision"],
                      fmt(r["roc_auc"]), fmt(r["champion_roc_auc"]), f"{r['landed_to_registered_s']:.2f}",
                      f"{r['landed_to_serving_s']:.2f}" if r["landed_to_serving_s"] else "-")
    console.print(table)
    console.print(f"predictions: {summary['predictions_sent']} sent, {summary['predictions_logged']} in BigQuery; "
                  f"serving {summary['serving']}; {summary['seconds']} s in all")
    split = "; ".join(f"round {r['round']}: " + ", ".join(f"v{v} {n}" for v, n in sorted(r["predictions_by_version"].items()))
                      for r in summary["rounds"] if r.get("predictions_by_version"))
    if split:
        console.print(f"predictions in BigQuery by the version that answered (through the endpoint"
                      f"{', canary ' + str(summary['canary_percent']) + '%' if summary.get('canary_percent') else ''}): "
                      f"{split}")
