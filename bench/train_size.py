"""Training at size: rows -> ingest, snapshot, snapshot read, fit and the trainer's work, and the evaluator's.

Start a stack (its emulators and adapters; no tick is published, so its own stages stay idle). For
each size: land that many demo rows (recycled with fresh row ids) with `mlops ingest`'s function in
one call, freeze a snapshot (`Warehouse.create_snapshot`), then do what the trainer's handler does
with the scikit-learn backend: read the snapshot (timed alone: `read_s`), train (the model's own
`fit_s`, and `train_s` for the backend call: split, fit, artifact written), and what the evaluator
does with a fresh backend (nothing cached): read its held-out rows (`evaluate_read_s`, timed alone:
the snapshot's row count for AUTO_SPLIT, then a Read API session restricted to `_split_bucket <
threshold`; `evaluate_read_rows` rows) and score the candidate on them (`evaluate_score_s`). The
split is AUTO_SPLIT (10,000 eval rows above 50,000 rows, by the bucket the snapshot stores for each
row id).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.common import RowFeed, bench_stack, component_pids, foreign_stack_processes, memory_sample, say, write_result

NAME = "train-size"
TARGET_INGEST_1M_S = 60.0

SPEC_YAML = """\
name: {name}
source:
  table: {table}
  label: rings_above_9
  features: [sex, length, diameter, height, whole_weight, shucked_weight, viscera_weight, shell_weight]
model:
  type: LOGISTIC_REG
  options: {{l2_reg: 0.1, max_iterations: 50}}
promotion: {{metric: log_loss, min_gain: 0.0}}
"""


def run(sizes: list[int] | None = None, keep_data: bool = False, **_: Any) -> list[dict[str, Any]]:
    from mlops.adapters.sklearn_backend import SklearnBackend
    from mlops.core import layout
    from mlops.core.spec import parse_spec
    from mlops.ops.ingest import ingest_rows

    sizes = sizes or [100_000, 1_000_000]
    results = []
    with bench_stack(NAME, keep_data=keep_data) as bs:
        roots = component_pids(bs)
        foreign = foreign_stack_processes(roots)
        warehouse, blobs = bs.ctx.warehouse, bs.ctx.blobs
        for size in sizes:
            suffix = uuid.uuid4().hex[:6]
            name = f"size{size}-{suffix}"
            spec = parse_spec(SPEC_YAML.format(name=name, table=f"size{size}_{suffix}"), "<bench>")
            rows = RowFeed().take(size)
            say(f"{size} rows: ingest")
            started = time.perf_counter()
            landed = ingest_rows(warehouse, spec, rows)
            ingest_s = time.perf_counter() - started
            del rows
            watermark = warehouse.source_status(spec.source.table, None).watermark
            started = time.perf_counter()
            snapshot_rows = warehouse.create_snapshot(spec.source.table, f"{spec.source.table}__d0001", watermark)
            snapshot_s = time.perf_counter() - started
            snapshot = warehouse.qualified(f"{spec.source.table}__d0001", warehouse.snapshot_dataset)

            say(f"{size} rows: read, train, evaluate")
            trainer = SklearnBackend(warehouse, blobs)
            started = time.perf_counter()
            read_rows = len(trainer.training_rows(spec, snapshot))  # what train() reads first, timed alone
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            artifact = trainer.train(spec, snapshot, layout.artifact_dir(name, "c0001"))
            train_s = time.perf_counter() - started  # rows already read: split, fit, artifact written

            evaluator = SklearnBackend(warehouse, blobs)
            started = time.perf_counter()
            evaluate_read_rows = len(evaluator.held_out_rows(spec, snapshot))  # what evaluate() reads, timed alone
            evaluate_read_s = time.perf_counter() - started
            started = time.perf_counter()
            evaluation = evaluator.evaluate(spec, artifact.artifact_uri, artifact.checksum, snapshot)
            score_s = time.perf_counter() - started
            emulator = memory_sample({"bigquery": roots["bigquery"]})

            figures = {
                "rows": size, "landed": landed.rows, "ingest_s": round(ingest_s, 2),
                "ingest_rows_per_s": round(size / ingest_s), "snapshot_s": round(snapshot_s, 2),
                "snapshot_rows": snapshot_rows, "read_s": round(read_s, 2), "read_rows": read_rows,
                "fit_s": round(artifact.train_seconds, 2), "train_s_after_read": round(train_s, 2),
                "handler_s": round(read_s + train_s, 2), "train_rows": artifact.train_rows,
                "evaluate_read_s": round(evaluate_read_s, 2), "evaluate_read_rows": evaluate_read_rows,
                "evaluate_score_s": round(score_s, 2),
                "eval_rows": evaluation.eval_rows, "emulator_rss_mib": round(emulator["rss_mib"], 1),
                "other_stack_processes_at_start": foreign,
                "meets": {"read_less_than_fit": read_s < artifact.train_seconds,
                          "evaluator_reads_only_its_rows": evaluate_read_rows == evaluation.eval_rows,
                          **({"ingest_1m_under_60_s": ingest_s < TARGET_INGEST_1M_S} if size >= 1_000_000 else {})},
            }
            results.append(write_result(NAME, {"rows": size, "model": "LOGISTIC_REG", "split": "AUTO_SPLIT"}, figures))
    return results
