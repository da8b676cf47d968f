"""Benchmarks of the local stack: `python -m bench [loop|predictor]` (or `make bench`).

- `loop` (`bench.loop_overhead`): the wall time from rows landing to the predictor serving the model
  trained on them, minus the train and evaluate compute measured inside those stages: what the loop's
  plumbing (Pub/Sub hops, BigQuery reads, registry and endpoint calls, model loading) costs per round.
- `predictor` (`bench.predictor_latency`): open-loop load at a fixed rate against the predictor, latency
  from each request's scheduled send time, then a check that every prediction reached the
  `predictions` table, and the stack's peak memory during the run.

`bench.loadgen` is the open-loop load generator; `bench.common` holds result writing, the throw-away
stack, landing rows and reading processes from /proc. Figures and their analysis: docs/performance.md.

Each run starts its own stack in a fresh temporary folder (ticker off) and stops it afterwards. Results
are appended, one JSON object per line, to `bench/results/<name>.jsonl` (git-ignored) and printed.
"""
