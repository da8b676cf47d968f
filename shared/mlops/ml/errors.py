"""What can go wrong with a model's options, its training rows or the instances it is asked to score.

Each is a mistake in the input, not a fault of the machine: retrying the same input cannot help,
so a trainer backend counts them as permanent (`TrainerBackend.is_permanent`). They share one base,
`InputError`, with the other input errors of this package (`mlops.ml.split.SplitError`,
`mlops.ml.artifact.ArtifactError`), so that decision is one isinstance check.
"""

from __future__ import annotations


class InputError(ValueError):
    """A mistake in the input (options, rows, artifact, instances): the same input fails the same way."""


class ModelOptionsError(InputError):
    """Bad CREATE MODEL options; `problems` names every offending option."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid model options: " + "; ".join(problems))


class InvalidInstancesError(InputError):
    """Prediction instances that don't fit the model's features; `problems` lists every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid instances: " + "; ".join(problems))


class UnsupportedLocallyError(InputError):
    """A valid BigQuery ML option value that the scikit-learn backend cannot reproduce."""


class TrainingDataError(InputError):
    """The rows can't train this model (no rows, a label with one class, a column of mixed types...)."""


def require_columns(table: str, present: list[tuple[str, str]] | None, needed: list[str]) -> None:
    """A snapshot that is gone, or lacks a column the spec names, cannot train now or on a retry: say so
    in the model's words (a TrainingDataError) rather than as whatever the warehouse would raise."""
    if present is None:
        raise TrainingDataError(f"snapshot table {table} does not exist")
    missing = [c for c in needed if c not in {name for name, _ in present}]
    if missing:
        raise TrainingDataError(f"snapshot table {table} has no column {', '.join(missing)}")


class ArtifactError(InputError):
    """Files that are not a loadable model artifact (mlops.ml.artifact and the family formats)."""
