"""The one way SQL is written from names and values: identifiers checked and quoted here, values as literals.

Every identifier that reaches SQL (a spec's table, feature and label columns, a snapshot or model
id) goes through `quote_column` or `quote_qualified`, which refuse anything but a plain BigQuery
identifier before backtick-quoting it, so no name can change a statement's shape. Values travel as
query parameters where the statement allows them; where BigQuery takes none (CREATE MODEL options)
they are rendered by `sql_literal`, which escapes strings. The patterns are also what a pipeline
spec is validated against (`mlops.core.spec`), so a bad name is refused at `mlops pipeline apply`,
long before any SQL is built.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from enum import Enum
from typing import Any

# A column: letters, digits and underscores, not starting with a digit (BigQuery allows more with
# flexible column names; the loop does not need them and refuses them).
COLUMN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,299}"
# project (letters, digits, hyphens; optionally "domain.com:" scoped; emulator projects may be short)
# . dataset . table or model
_PROJECT = r"(?:[a-z0-9][a-z0-9.-]*:)?[a-z][a-z0-9-]{0,62}"
_COLUMN = re.compile(COLUMN_PATTERN)
_QUALIFIED = re.compile(rf"(?:{_PROJECT}\.)?[A-Za-z0-9_]{{1,1024}}\.[A-Za-z0-9_-]{{1,1024}}")


class SqlBuildError(ValueError):
    """A name or value that cannot be put into SQL safely."""


def is_column_name(name: object) -> bool:
    return isinstance(name, str) and _COLUMN.fullmatch(name) is not None



def sql_literal(value: Any) -> str:
    """A GoogleSQL literal for an option value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Enum):
        return sql_string(str(value.value))
    if isinstance(value, str):
        return sql_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        number = float(value)
        if not math.isfinite(number):
            raise SqlBuildError(f"{value!r} has no SQL literal")
        return repr(number)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sql_literal(item) for item in value) + "]"
    raise SqlBuildError(f"no SQL literal for a {type(value).__name__}: {value!r}")


def sql_string(text: str) -> str:
    """A single-quoted string literal; backslashes, quotes and control characters escaped."""
    escaped = []
    for char in text:
        if char == "\\":
            escaped.append("\\\\")
        elif char == "'":
            escaped.append("\\'")
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\r":
            escaped.append("\\r")
        elif char == "\t":
            escaped.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    return "'" + "".join(escaped) + "'"


def quote_column(name: str) -> str:
    if not isinstance(name, str) or not _COLUMN.fullmatch(name):
        raise SqlBuildError(f"column name {name!r} is not a plain BigQuery identifier (letters, digits, _)")
    return f"`{name}`"


def quote_qualified(name: str) -> str:
    """`project.dataset.table` (or `dataset.table`) for a table or a model, as one backtick-quoted path."""
    if not isinstance(name, str) or not _QUALIFIED.fullmatch(name):
        raise SqlBuildError(f"{name!r} is not a table or model id of the form [project.]dataset.name")
    return f"`{name}`"
