"""`python -m bench [loop|predictor|durability|logging|train-size|scale ...]`: run the named benchmarks (all when none is named)."""

from __future__ import annotations

import argparse
import sys

BENCHMARKS = ("loop", "predictor", "durability", "logging", "train-size", "scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    loop = parser.add_argument_group("loop")
    loop.add_argument("--rounds", type=int, default=5, help="deployed rounds to measure, the first bootstraps")
    loop.add_argument("--bootstrap-rows", type=int, default=1000, help="rows of the first batch")
    loop.add_argument("--batch-rows", type=int, default=250, help="rows of every later batch")
    predictor = parser.add_argument_group("predictor")
    predictor.add_argument("--rate", type=float, default=500.0, help="requests per second (open loop)")
    predictor.add_argument("--duration", type=float, default=20.0, help="seconds of measured load")
    predictor.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    predictor.add_argument("--connections", type=int, default=32, help="keep-alive connections of the client")
    predictor.add_argument("--client", choices=("asyncio", "threads"), default="asyncio",
                           help="load generator: asyncio streams or threads with http.client")
    predictor.add_argument("--log-timeout", type=float, default=180.0,
                           help="seconds to wait for every prediction to reach the predictions table")
    durability = parser.add_argument_group("durability")
    durability.add_argument("--durability-rate", type=float, default=200.0,
                            help="requests per second of each crash and latency run")
    durability.add_argument("--durability-duration", type=float, default=10.0,
                            help="seconds of measured load per run (the fault comes half-way)")
    logging = parser.add_argument_group("logging")
    logging.add_argument("--logging-rows-per-s", type=float, default=5000.0, help="predictions per second served")
    logging.add_argument("--logging-instances", type=int, default=50, help="instances per request")
    logging.add_argument("--logging-duration", type=float, default=60.0, help="seconds of measured load")
    logging.add_argument("--logging-source", choices=("publish", "predictor"), default="publish",
                         help="prediction.made published as the predictor's batcher does, or served by the predictor")
    logging.add_argument("--logging-batch", type=int, default=5000,
                         help="predictions per prediction.made (the predictor's MLOPS_LOG_BATCH, default 5000)")
    logging.add_argument("--logging-interval", type=float, default=1.0,
                         help="longest wait before an event is published (MLOPS_LOG_INTERVAL_S)")
    train_size = parser.add_argument_group("train-size")
    train_size.add_argument("--train-sizes", default="100000,1000000", help="snapshot sizes in rows, comma-separated")
    scale = parser.add_argument_group("scale")
    scale.add_argument("--pipelines", type=int, default=50, help="pipelines side by side")
    parser.add_argument("--keep-data", action="store_true", help="keep the stack's data folder and logs")
    args = parser.parse_args(argv)

    options = vars(args)
    names = options.pop("names") or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    failed = []
    for name in names:
        try:
            if name == "loop":
                from bench import loop_overhead

                loop_overhead.run(**options)
            elif name == "predictor":
                from bench import predictor_latency

                predictor_latency.run(**options)
            elif name == "durability":
                from bench import predictor_durability

                predictor_durability.run(**{**options, "rate": options["durability_rate"],
                                            "duration": options["durability_duration"], "warmup": 2.0,
                                            "connections": 16})
            elif name == "logging":
                from bench import logging_throughput

                logging_throughput.run(**{**options, "rows_per_s": options["logging_rows_per_s"],
                                          "instances": options["logging_instances"],
                                          "duration": options["logging_duration"], "warmup": 5.0,
                                          "source": options["logging_source"],
                                          "batch": options["logging_batch"], "interval": options["logging_interval"],
                                          "connections": 16})
            elif name == "train-size":
                from bench import train_size

                train_size.run(**{**options, "sizes": [int(n) for n in options["train_sizes"].split(",")]})
            elif name == "scale":
                from bench import scale

                scale.run(**options)
        except Exception as error:  # noqa: BLE001 - run the others, fail at the end
            print(f"benchmark {name} failed: {error!r}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
