"""Per-row serving cost of a loaded model, in-process: `python -m bench.serving_cost [--calls N]`.

Trains each model type on the bundled breast-cancer dataset (30 numeric features), writes its
artifact folder, loads it with the predictor's loader (`predictor.loading.load_served_model`) and
times `predict` on one row (what one request costs the predictor's CPU), then on a batch of 64 rows
(per row). Input validation is included, as the predictor runs it. Times are the process's CPU time
(`time.process_time`), median of 5 repetitions. No HTTP, no stack: this is the
model's share of a request, the part the artifact format decides.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from mlops.ml.artifact import folder_checksum, write_folder
from mlops.ml.datasets import load_demo_dataset
from mlops.ml.features import ServingPolicy
from mlops.ml.training import train
from mlops.testing.memory import InMemoryBlobStore

MODEL_TYPES = ("LOGISTIC_REG", "BOOSTED_TREE_CLASSIFIER", "RANDOM_FOREST_CLASSIFIER")


def _per_call_us(fn, calls: int) -> float:
    # CPU time of this process, not wall-clock: on a shared, loaded machine wall-clock mostly measures
    # the other tenants (serving is single-threaded: the booster runs with nthread=1).
    samples = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(calls):
            fn()
        samples.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, "services/predictor")
    from predictor.loading import load_served_model

    parser = argparse.ArgumentParser(prog="python -m bench.serving_cost", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    dataset = load_demo_dataset("breast_cancer")
    rows = [{k: r[k] for k in dataset.feature_columns} for r in dataset.rows]
    print(f"{'model type':28} {'1 row (us)':>11} {'64 rows (us/row)':>17}")
    for model_type in MODEL_TYPES:
        model = train(model_type, {}, dataset.rows, dataset.feature_columns, dataset.label_column, seed=0)
        blobs = InMemoryBlobStore("bench")
        uri = write_folder(blobs, "models/bench/c1", model.files)
        served = load_served_model(blobs, uri, folder_checksum(model.files))
        one, batch = rows[:1], rows[:64]
        policy = ServingPolicy()
        single = _per_call_us(lambda: (served.serving_problems(one, policy), served.predict(one)), args.calls)
        many = _per_call_us(lambda: (served.serving_problems(batch, policy), served.predict(batch)),
                            max(1, args.calls // 20)) / len(batch)
        print(f"{model_type:28} {single:11.1f} {many:17.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
