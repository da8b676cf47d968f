"""What can go wrong with a model's options, its training rows or the instances it is asked to score.

Each is a mistake in the input, not a fault of the machine: retrying the same input cannot help,
so a trainer backend counts them as permanent (`TrainerBackend.is_permanent`).
"""

from __future__ import annotations


class ModelOptionsError(ValueError):
    """Bad CREATE MODEL options; `problems` names every offending option."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid model options: " + "; ".join(problems))


class InvalidInstancesError(ValueError):
    """Prediction instances that don't fit the model's features; `problems` lists every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid instances: " + "; ".join(problems))


class UnsupportedLocallyError(ValueError):
    """A valid BigQuery ML option value that the scikit-learn backend cannot reproduce."""


class TrainingDataError(ValueError):
    """The rows can't train this model (no rows, a label with one class, a column of mixed types...)."""
