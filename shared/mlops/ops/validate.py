"""User input checked against what the warehouse holds, before anything is written.

A spec against its source table (label and feature columns, their types: the data-watcher's own
check, `mlops.core.spec.spec_problems`), and CSV rows against the columns they land in. Every
problem is gathered; the message names the first few in one line, with the row, the column and the
value, so the user can fix the file without reading a log. (`mlops ingest` types whole columns in
Arrow and asks `column_problems` only about a column that did not fit: the same words, in the same
order, as `coerce_rows` over the rows.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlops.core.spec import NUMERIC_TYPES, spec_problems
from mlops.ports.warehouse import standard_type

# The spec against its table: `mlops.core.spec.spec_problems`, the same words the data-watcher uses.
__all__ = ["coerce_rows", "coerce_value", "column_problems", "one_line", "spec_problems", "value_problem"]
SHOWN_PROBLEMS = 3


def one_line(problems: Sequence[str], shown: int = SHOWN_PROBLEMS) -> str:
    """The first problems, and how many more there are."""
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f" (and {more} more)" if more > 0 else "")


def coerce_value(value: Any, kind: str) -> Any:
    """`value` as the column type takes it; raises ValueError when it cannot be."""
    if value is None:
        return None
    if kind == "INT64":
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise ValueError
    if kind in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        return float(value)
    if kind == "BOOL":
        words = {"true": True, "false": False, "1": True, "0": False}
        if isinstance(value, bool):
            return value
        if str(value).lower() in words:
            return words[str(value).lower()]
        raise ValueError
    if kind == "STRING":
        return value if isinstance(value, str) else str(value)
    return value  # TIMESTAMP and the rest: the warehouse parses them


def coerce_rows(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str],
                wanted: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The `wanted` columns of each row, typed as the table's columns are; and every value that
    does not fit, as `row N, column C: 'v' is not a <TYPE>` (N counts data rows from 1)."""
    typed: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, row in enumerate(rows, 1):
        out: dict[str, Any] = {}
        for name in wanted:
            kind = standard_type(columns.get(name, "STRING"))
            try:
                out[name] = coerce_value(row.get(name), kind)
            except ValueError:
                problems.append(value_problem(number, name, row.get(name), kind))
        typed.append(out)
    return typed, problems


def value_problem(number: int, name: str, value: Any, kind: str) -> str:
    """`row N, column C: 'v' is not a <TYPE> (the column is T)`: one value that does not fit."""
    word = "a whole number" if kind == "INT64" else "a number" if kind in NUMERIC_TYPES else kind
    return f"row {number}, column {name!r}: {value!r} is not {word} (the column is {kind})"


def column_problems(name: str, values: Iterable[Any], kind: str) -> list[tuple[int, str]]:
    """`coerce_rows` for one column: (row index, problem) of each of its values that does not fit
    `kind`. What `mlops ingest` words its refusal with, for the columns Arrow could not type alone."""
    kind = standard_type(kind)
    problems = []
    for index, value in enumerate(values):
        try:
            coerce_value(value, kind)
        except ValueError:
            problems.append((index, value_problem(index + 1, name, value, kind)))
    return problems
