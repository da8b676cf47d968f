"""Landing data: CSV rows into a pipeline's source table (what a daily load job does in the cloud).

Each row gets `_row_id` (its identity: the eval split hashes it, so a row keeps its side forever)
and `_ingested_at` (one time per batch: the watermark the data-watcher counts new rows by). The
table is created on first use with column types inferred from the data.

Idempotent: a row without a `_row_id` of its own gets one derived from the batch's content and its
position, and rows whose id the table already holds are not written again. So re-running an ingest
that failed (or that did land, but whose caller never heard so) lands each row once.

Rows land with `Warehouse.load_arrow`: in BigQuery a load job from Parquet, so a file lands whole or
not at all (no streaming inserts: insertAll was 150-390 ms per 500 rows on the emulator, 156 s for
300,000 rows; a pending Write API stream 146 s for 1,000,000; see docs/performance.md, `train-size`).

Column by column: a file is read into Arrow (pyarrow's CSV reader; Python's `csv` module for a file
with quotes, whose corner cases the two do not read alike), each column is typed once as `_typed`
types each of its values, checked against its table column and handed to the warehouse as one Arrow
table, with the row ids and the batch digest derived from the columns as they always were from the
rows (so a file ingested before this way of reading is still recognised). What Arrow cannot settle
goes value by value, with the same result: the values only Python reads as numbers (` 5`, `1_000`,
`inf`: once per distinct value), a table column of a rarer type, and the message about values that do
not fit, which `mlops.ops.validate.column_problems` writes for the columns concerned in the words and
order the row-wise check (`coerce_rows`) always used.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from mlops.core.spec import INGESTED_AT_COLUMN, NUMERIC_TYPES, ROW_ID_COLUMN, PipelineSpec
from mlops.core.topology import LABELS_TABLE
from mlops.ops.errors import OperatorError
from mlops.ops.validate import coerce_value, column_problems, one_line, spec_problems
from mlops.ports.warehouse import Warehouse, WarehouseError, standard_type

BATCH_ROWS = 500  # label rows per insert
PRESENCE_CHECK_IDS = 10_000  # ids per query parameter array
CHUNK_ROWS = 65_536  # rows per step where a whole column of text would be large (digest, Python's reader)

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW_TYPES = {"INT64": pa.int64(), "FLOAT64": pa.float64(), "BOOL": pa.bool_(), "STRING": pa.string()}
_ARROW_TAKES: dict[str, set[type]] = {"INT64": {int}, "FLOAT64": {int, float}, "STRING": {str}}  # as coerce_value would
_NO_TEXT = pa.scalar(None, pa.string())
_DIGITS = r"^[+-]?[0-9]+$"  # int() of it is a Python int; Arrow reads those of up to 18 characters
_DECIMAL_CHARS = r"^[0-9.eE+-]+$"
_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"  # the decimals both Arrow and float() read
# A value with an ASCII character no Python number has (not a digit, sign, point, `_`, exponent, letter
# of nan/inf/infinity or whitespace) is text, whatever else it holds; any other one (' 5', 'F', '١')
# Python decides: int() and float() also take Unicode digits and whitespace.
_TEXT = r"[^0-9+\-._eEnNaAiIfFtTyY\t\n\x0b\x0c\r \x1c-\x1f\x{80}-\x{10FFFF}]"
_JSON_PLAIN = r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$"  # printable ASCII but `"` and `\`: json.dumps only quotes it


class IngestError(OperatorError, ValueError):
    """Rows that cannot land as they are; nothing of them was written."""


class _OutOfRange(IngestError):
    """A value its column's type takes but Arrow's cannot hold (an integer beyond INT64)."""


def _typed(value: str) -> Any:
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _bq_type(values: Iterable[Any]) -> str:
    return _bq_type_of({type(v) for v in values if v is not None})


def _bq_type_of(seen: set[type]) -> str:
    if seen <= {int}:
        return "INT64"
    if seen <= {int, float}:
        return "FLOAT64"
    return "STRING"


# ------------------------------------------------------------------------------------------ columns

def _arrow_array(values: list[Any], kind: str, name: str) -> pa.Array:
    """Values already coerced to `kind` (`coerce_value`) as the Arrow column the warehouse takes."""
    try:
        if kind in _ARROW_TYPES:
            return pa.array(values, _ARROW_TYPES[kind])
        if kind in NUMERIC_TYPES:  # NUMERIC, BIGNUMERIC...: the text of the number, the warehouse parses it
            return pa.array([None if v is None else str(v) for v in values], pa.string())
        return pa.array(values)  # TIMESTAMP and the rest: as the file has them, the warehouse parses them
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
        raise _OutOfRange(f"column {name!r} has a value beyond the range of {kind} ({error}): "
                          "fix it and ingest the file again; nothing landed") from None


def _floats_text(floats: pa.Array, as_json: bool) -> pa.Array:
    """Each float as Python writes it: `repr` (`str`), or `json.dumps` (NaN, Infinity). Arrow's own
    text has the same shortest digits but its own layout ('1' for 1.0, '1e+15', '2.5e-7'), so it is
    used where both put the digits the same way (a plain decimal, between 1e-4 and 1e16 as repr
    does), with '.0' added to a whole number; Python writes the others."""
    text = pc.cast(floats, pa.string())
    size = pc.abs(floats)
    in_range = pc.or_(pc.equal(size, 0.0), pc.and_(pc.greater_equal(size, 1e-4), pc.less(size, 1e16)))
    plain = pc.fill_null(pc.and_(in_range, pc.invert(pc.match_substring(text, "e"))), False)
    whole = pc.invert(pc.match_substring(text, "."))
    text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    other = pc.and_(pc.is_valid(floats), pc.invert(plain))
    if _any(other):
        write: Callable[[float], str] = json.dumps if as_json else repr
        text = pc.replace_with_mask(text, other, pa.array([write(v) for v in floats.filter(other).to_pylist()],
                                                          pa.string()))
    return text


def _json_strings(texts: pa.Array) -> pa.Array:
    """`json.dumps` of each text (ASCII, escapes), quoting only those that need no escape."""
    quoted = pc.binary_join_element_wise('"', texts, '"', "")
    escaped = pc.and_(pc.is_valid(texts), pc.invert(pc.fill_null(pc.match_substring_regex(texts, _JSON_PLAIN), True)))
    if _any(escaped):
        quoted = pc.replace_with_mask(quoted, escaped, pa.array(
            [json.dumps(v) for v in texts.filter(escaped).to_pylist()], pa.string()))
    return quoted


def _cast(values: pa.Array, kind: pa.DataType) -> pa.Array | None:
    try:
        return pc.cast(values, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _matches(texts: pa.Array, pattern: str) -> pa.Array:
    return pc.fill_null(pc.match_substring_regex(texts, pattern), False)


def _where(mask: pa.Array, texts: pa.Array) -> pa.Array:
    return pc.if_else(mask, texts, _NO_TEXT)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _unsigned(texts: pa.Array) -> pa.Array:
    """Without a leading '+', which Python's int() takes and Arrow's does not."""
    return pc.replace_substring_regex(texts, r"^\+", "") if _any(pc.fill_null(pc.starts_with(texts, "+"), False)) else texts


class _Values:
    """A column of Python values: rows handed in as dicts, or a CSV column only Python can type."""

    def __init__(self, values: list[Any]):
        self.values = values
        self.types = set(map(type, values)) - {type(None)}

    def bq_type(self) -> str:
        return _bq_type_of(self.types)

    def python_values(self) -> list[Any]:
        return self.values

    def typed(self, kind: str, name: str) -> pa.Array | None:
        """The values as `coerce_value` makes them for a `kind` column, in Arrow; None when one does not fit."""
        kind = standard_type(kind)
        if self.types and self.types <= _ARROW_TAKES.get(kind, set()):
            try:  # one call for a column of the right Python type
                return pa.array(self.values, _ARROW_TYPES[kind])
            except (pa.ArrowInvalid, OverflowError):
                pass  # an integer beyond what Arrow converts exactly: value by value
        try:
            coerced = [coerce_value(v, kind) for v in self.values]
        except ValueError:
            return None
        return _arrow_array(coerced, kind, name)

    def json_texts(self) -> pa.Array:
        return pa.array([json.dumps(v) for v in self.values], pa.string())

    def own_ids(self) -> pa.Array:
        if self.types <= {str} and "" not in self.values:
            return pa.array(self.values, pa.string())
        return pa.array([str(v) if v not in (None, "") else None for v in self.values], pa.string())


def _column_of(rows: Sequence[dict[str, Any]], name: str) -> _Values:
    try:
        return _Values(list(map(itemgetter(name), rows)))
    except KeyError:  # a row without it: None there
        return _Values([row.get(name) for row in rows])


class _Texts:
    """A CSV column as its texts (null where a short row had no value), typed as `_typed` types each
    value: empty -> None, then int, then float, else the text. Arrow reads the numbers: its int and
    decimal grammars are within Python's, and its parse correctly rounded as `float()`; a value with a
    character no Python number has is text; Python types what is left (' 5', '1_000', 'inf', 'F'),
    once per distinct value. A failed Arrow cast costs a message per value, so none is attempted on
    values a pattern has not picked first."""

    def __init__(self, texts: pa.Array):
        self.texts = texts
        self.values = values = pc.if_else(pc.fill_null(pc.equal(texts, ""), True), _NO_TEXT, texts)
        self.python: _Values | None = None
        valid = pc.is_valid(values)
        digits = _matches(values, _DIGITS)
        self.is_int = pc.and_(digits, pc.fill_null(pc.less_equal(pc.binary_length(values), 18), False))  # fits INT64
        self.is_float = self.is_text = pa.repeat(pa.scalar(False), len(texts))
        self.ints = _cast(_where(self.is_int, _unsigned(values)), pa.int64())
        self.floats: pa.Array | None = None  # where is_float
        rest = pc.and_(valid, pc.invert(self.is_int))
        if self.ints is None or not _any(rest):  # whole numbers only, the common case
            if self.ints is None:
                self._by_python()
            return
        decimal = pc.and_(pc.and_(rest, pc.invert(digits)), _matches(values, _DECIMAL_CHARS))
        if _any(decimal):
            floats = _cast(_where(decimal, values), pa.float64())
            if floats is None:  # of those characters but not a number Arrow reads ('-', '1.2.3')
                decimal = pc.and_(decimal, _matches(values, _DECIMAL))
                floats = _cast(_where(decimal, values), pa.float64())
                if floats is None:
                    self._by_python()
                    return
            self.floats, self.is_float = floats, decimal
        rest = pc.and_(rest, pc.invert(decimal))
        if not _any(rest):
            return
        self.is_text = pc.and_(rest, _matches(values, _TEXT))
        undecided = pc.and_(rest, pc.invert(self.is_text))
        if _any(undecided):
            self._decide(undecided)

    def _decide(self, undecided: pa.Array) -> None:
        """Type the values only Python can, once per distinct value, into the column's masks and arrays."""
        distinct = pc.unique(self.values.filter(undecided))
        typed = [_typed(v) for v in distinct.to_pylist()]
        if any(type(v) is int and not -(2**63) <= v < 2**63 for v in typed):
            self._by_python()  # a Python int beyond INT64
            return
        at = pc.index_in(self.values, value_set=distinct)  # null for the values decided already
        kinds = pc.take(pa.array([0 if type(v) is int else 1 if type(v) is float else 2 for v in typed], pa.int8()), at)
        self.is_int = pc.or_(self.is_int, pc.fill_null(pc.equal(kinds, 0), False))
        self.is_float = pc.or_(self.is_float, pc.fill_null(pc.equal(kinds, 1), False))
        self.is_text = pc.or_(self.is_text, pc.fill_null(pc.equal(kinds, 2), False))
        ints = pc.take(pa.array([v if type(v) is int else None for v in typed], pa.int64()), at)
        floats = pc.take(pa.array([v if type(v) is float else None for v in typed], pa.float64()), at)
        self.ints = ints if self.ints is None else pc.coalesce(self.ints, ints)
        self.floats = floats if self.floats is None else pc.coalesce(self.floats, floats)

    def _by_python(self) -> None:
        self.python = _Values([_typed(v) if v is not None else None for v in self.texts.to_pylist()])

    def bq_type(self) -> str:
        if self.python is not None:
            return self.python.bq_type()
        if _any(self.is_text):
            return "STRING"
        return "FLOAT64" if _any(self.is_float) else "INT64"

    def python_values(self) -> list[Any]:
        if self.python is not None:
            return self.python.values
        return [_typed(v) if v is not None else None for v in self.texts.to_pylist()]

    def _number_texts(self, as_json: bool) -> pa.Array:
        """Each number as Python writes it (str, or json.dumps), null elsewhere."""
        ints = pc.cast(self.ints, pa.string())
        return ints if self.floats is None else pc.coalesce(ints, _floats_text(self.floats, as_json))

    def typed(self, kind: str, name: str) -> pa.Array | None:
        if self.python is not None:
            return self.python.typed(kind, name)
        kind = standard_type(kind)
        if kind == "STRING":  # a number in a STRING column is its Python text ('007' -> '7'), as ever
            return pc.if_else(self.is_text, self.values, self._number_texts(as_json=False))
        if kind in NUMERIC_TYPES and _any(self.is_text):
            return None
        if kind == "INT64" and not _any(self.is_float):
            return self.ints
        if kind == "FLOAT64":  # a whole number to its nearest double, as float() does
            whole = pc.cast(self.ints, pa.float64(), safe=False)
            return whole if self.floats is None else pc.coalesce(self.floats, whole)
        return _Values(self.python_values()).typed(kind, name)  # whole floats for INT64, BOOL words...

    def json_texts(self) -> pa.Array:
        if self.python is not None:
            return self.python.json_texts()
        texts = self._number_texts(as_json=True)
        if _any(self.is_text):
            texts = pc.if_else(self.is_text, _json_strings(_where(self.is_text, self.values)), texts)
        return pc.fill_null(texts, "null")

    def own_ids(self) -> pa.Array:
        if self.python is not None:
            return self.python.own_ids()
        return self.typed("STRING", ROW_ID_COLUMN)


_Column = _Values | _Texts


# ------------------------------------------------------------------------------------------ batches

class Batch:
    """Rows to land, column by column: a CSV file's (`read_csv`) or dicts' (`Batch.of_rows`).

    `names` are the columns the rows have (the header, or the first dict's keys); a column is typed
    when first asked for."""

    def __init__(self, names: Sequence[str], length: int, make: Callable[[str], _Column],
                 rows: Sequence[dict[str, Any]] | None = None):
        self.names = list(names)
        self._length = length
        self._make = make
        self._columns: dict[str, _Column] = {}
        self._rows = rows

    @classmethod
    def of_rows(cls, rows: Sequence[dict[str, Any]]) -> Batch:
        """Rows as dicts of typed values (int, float, text, None), as `mlops.ml.datasets` has them."""
        return cls(list(rows[0]) if rows else [], len(rows), lambda name: _column_of(rows, name), rows)

    @classmethod
    def of_texts(cls, names: Sequence[str], texts: Sequence[pa.Array]) -> Batch:
        by_name = dict(zip(names, texts, strict=True))
        return cls(names, len(texts[0]) if texts else 0, lambda name: _Texts(by_name[name]))

    def __len__(self) -> int:
        return self._length

    def column(self, name: str) -> _Column:
        if name not in self._columns:
            self._columns[name] = self._make(name)
        return self._columns[name]

    def rows(self, names: Sequence[str] | None = None) -> Sequence[dict[str, Any]]:
        """The rows as dicts of typed values (of `names` only, when given and the batch has no dicts)."""
        if self._rows is not None:
            return self._rows
        wanted = self.names if names is None else list(names)
        columns = [self.column(name).python_values() for name in wanted]
        return [dict(zip(wanted, values, strict=True)) for values in zip(*columns, strict=True)]

    def row_ids(self) -> pa.Array:
        """Each row's `_row_id` (see `batch_row_ids`), without building the rows when they are columns."""
        own = self.column(ROW_ID_COLUMN).own_ids() if self._rows is not None or ROW_ID_COLUMN in self.names else None
        if own is not None and not own.null_count:
            return own  # every row has its own: no digest needed
        digest = _rows_digest(self._rows) if self._rows is not None else self._columns_digest()
        positions = pc.utf8_lpad(pc.cast(pa.array(range(len(self)), pa.int64()), pa.string()), 7, "0")
        derived = pc.binary_join_element_wise(f"{digest}-", positions, "")
        return derived if own is None else pc.coalesce(own, derived)

    def _columns_digest(self) -> str:
        """`_rows_digest` of the rows `_read_rows` would give, from the columns: each row's JSON text
        (keys sorted) joined in Arrow and hashed a chunk of rows at a time."""
        keys = sorted(self.names)
        texts = {key: self.column(key).json_texts() for key in keys}
        hasher = hashlib.sha256(b"[")
        for start in range(0, len(self), CHUNK_ROWS):
            parts: list[Any] = []
            for index, key in enumerate(keys):
                parts += [("{" if index == 0 else ", ") + json.dumps(key) + ": ", texts[key].slice(start, CHUNK_ROWS)]
            joined = pc.binary_join_element_wise(*parts, "}, ", "")  # every row followed by ", "
            _, offsets, values = joined.buffers()
            bounds = memoryview(offsets).cast("i")  # int32 offsets of a string array into its values
            data = memoryview(values)[bounds[joined.offset]:bounds[joined.offset + len(joined)]]
            hasher.update(data[:-2] if start + CHUNK_ROWS >= len(self) else data)  # none after the last row
        hasher.update(b"]")
        return hasher.hexdigest()[:16]


def _rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    # The digest of `json.dumps(rows, sort_keys=True, default=str)`, fed row by row: the same ids as
    # ever for the same file, without building one string of the whole file (1,000,000 rows: 100s of MB).
    hasher = hashlib.sha256(b"[")
    for index, row in enumerate(rows):
        hasher.update((", " if index else "").encode() + json.dumps(row, sort_keys=True, default=str).encode())
    hasher.update(b"]")
    return hasher.hexdigest()[:16]


def batch_row_ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Each row's `_row_id`: its own when it has one, else `<digest of the batch>-<position>`, the same
    for the same file every time (an identical line twice in a file stays two rows)."""
    digest = _rows_digest(rows)
    return [str(r[ROW_ID_COLUMN]) if r.get(ROW_ID_COLUMN) not in (None, "") else f"{digest}-{i:07d}"
            for i, r in enumerate(rows)]


# ------------------------------------------------------------------------------------------ reading

def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The data rows of a CSV file, value by value: the reference `read_csv` agrees with, and what it
    falls back on for a file only Python's reader reads (and for every error message about a file)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = []
            for number, row in enumerate(reader, 1):
                if None in row:  # DictReader files values beyond the header under the key None
                    raise IngestError(f"{path}: row {number} has more values than the header has columns")
                rows.append({k: _typed(v) if v is not None else None for k, v in row.items()})
    except FileNotFoundError:
        raise IngestError(f"no file {path}") from None
    except IsADirectoryError:
        raise IngestError(f"{path} is a folder, not a CSV file") from None
    except UnicodeDecodeError as error:
        raise IngestError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise IngestError(f"{path} is not a readable CSV file: {error}") from None
    if not rows:
        raise IngestError(f"{path} has no data rows (a header row, then one row per line): nothing landed")
    return rows


def _header_ok(names: Sequence[str]) -> bool:
    limit = csv.field_size_limit()
    return bool(names) and "" not in names and len(set(names)) == len(names) and all(len(n) <= limit for n in names)


def _arrow_read(data: bytes) -> tuple[list[str], list[pa.Array]] | None:
    """Header and columns (texts; null where a row is short) as pyarrow reads them, for a file it reads
    as Python's `csv` does: no quote (pyarrow and Python part ways on malformed quoting), no byte-order
    mark (Python keeps it in the first name), no NUL, every row as wide as the header, no field above
    `csv.field_size_limit`. None for any other file."""
    if not data or b'"' in data or b"\x00" in data or data.startswith(codecs.BOM_UTF8):
        return None
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    try:
        names = data[:min(ends, default=len(data))].decode("utf-8").split(",")
    except UnicodeDecodeError:
        return None
    if not _header_ok(names):
        return None
    uneven: list[Any] = []

    def refuse(row: Any) -> str:
        uneven.append(row)
        return "skip"

    keys = [f"c{i}" for i in range(len(names))]
    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(column_names=keys, skip_rows=1),
            parse_options=pa_csv.ParseOptions(quote_char=False, invalid_row_handler=refuse),
            convert_options=pa_csv.ConvertOptions(column_types={k: pa.string() for k in keys}, null_values=[],
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                  check_utf8=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if uneven:  # a short row (Python pads it) or a long one (an error): Python's reader says which
        return None
    columns = [table.column(key).combine_chunks() for key in keys]
    limit = csv.field_size_limit()
    if any((pc.max(pc.binary_length(c)).as_py() or 0) > limit for c in columns):
        return None
    return names, columns


def _python_read(data: bytes) -> tuple[list[str], list[pa.Array]] | None:
    """Header and columns as Python's `csv` reads them (any quoting), chunk by chunk into Arrow; a short
    row padded with null as DictReader pads it. None for a file `_read_rows` must speak about (not
    UTF-8, a long row, a csv error) or a header it reads its own way (duplicate or empty names)."""
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        names = next(reader, None)
        if names is None or not _header_ok(names):
            return None
        width = len(names)
        parts: list[list[pa.Array]] = [[] for _ in names]
        while chunk := list(itertools.islice(reader, CHUNK_ROWS)):
            rows = [row for row in chunk if row]  # DictReader skips blank lines
            if any(len(row) > width for row in rows):
                return None
            padded = [row if len(row) == width else [*row, *[None] * (width - len(row))] for row in rows]
            for index, values in enumerate(zip(*padded, strict=True)):
                parts[index].append(pa.array(values, pa.string()))
    except (UnicodeDecodeError, csv.Error):
        return None
    return names, [pa.concat_arrays(p) if p else pa.array([], pa.string()) for p in parts]


def read_csv(path: Path) -> Batch:
    """The data rows of a CSV file with a header row, column by column, each value typed as
    `_read_rows` types it (int, float, text, None for empty); a bad file is refused in its words."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IngestError(f"no file {path}") from None
    except IsADirectoryError:
        raise IngestError(f"{path} is a folder, not a CSV file") from None
    read = _arrow_read(data) or _python_read(data)
    if read is None or not read[1] or not len(read[1][0]):
        return Batch.of_rows(_read_rows(path))  # what only the row reader reads, or says
    return Batch.of_texts(*read)


# ------------------------------------------------------------------------------------------ landing

def source_columns(spec: PipelineSpec, batch: Batch) -> list[tuple[str, str, str]]:
    columns = [(ROW_ID_COLUMN, "STRING", "REQUIRED"), (INGESTED_AT_COLUMN, "TIMESTAMP", "REQUIRED")]
    for name in [*spec.source.features, spec.source.label]:
        columns.append((name, batch.column(name).bq_type(), "NULLABLE"))
    return columns


@dataclass(frozen=True)
class Landed:
    rows: int            # written now
    already_there: int   # the table had them from an earlier run of the same ingest


def _present(warehouse: Warehouse, table: str, ids: pa.Array) -> set[str]:
    """The ids among `ids` the table holds already."""
    if len(ids) <= PRESENCE_CHECK_IDS:
        return warehouse.present_values(table, ROW_ID_COLUMN, ids.to_pylist())
    # One read of the table's row ids (Storage Read API, Arrow) costs less than a query per
    # 10,000 ids once a file is that large; Arrow matches them.
    held = pa.array([r[ROW_ID_COLUMN] for r in warehouse.read_rows(table, [ROW_ID_COLUMN])], pa.string())
    return set(ids.filter(pc.is_in(ids, value_set=held)).to_pylist())


def ingest_rows(warehouse: Warehouse, spec: PipelineSpec, rows: Sequence[dict[str, Any]] | Batch,
                now: datetime | None = None) -> Landed:
    """Append rows to the spec's source table, or land none of them: the rows are checked against
    the table's columns (or, for a new table, the columns they make) first, every problem at once."""
    batch = rows if isinstance(rows, Batch) else Batch.of_rows(rows)
    needed = [*spec.source.features, spec.source.label]
    if not len(batch):
        raise IngestError("no data rows: nothing landed")
    missing = [c for c in needed if c not in batch.names]
    if missing:
        raise IngestError(f"the data has no column(s) {missing} that pipeline {spec.name} needs; "
                          f"it has {sorted(batch.names)}")
    existing = warehouse.table_columns(spec.source.table)
    planned = source_columns(spec, batch) if existing is None else None
    columns = [(name, kind) for name, kind, _ in planned] if planned else existing or []
    problems = spec_problems(spec, columns)
    if problems:
        fix = "fix the data" if planned else "fix the spec (`mlops pipeline apply`) or the data"
        raise IngestError(f"pipeline {spec.name} cannot train on {'these rows' if planned else 'its table'}: "
                          f"{one_line(problems)}; {fix}. Nothing landed")
    kinds = dict(columns)
    typed: dict[str, pa.Array | None] = {}
    beyond: list[_OutOfRange] = []  # said when no value is wrong: the row-wise check let them pass
    for name in needed:
        try:
            typed[name] = batch.column(name).typed(kinds.get(name, "STRING"), name)
        except _OutOfRange as error:
            typed[name] = pa.nulls(0)
            beyond.append(error)
    failing = [name for name in needed if typed[name] is None]
    if failing:  # every value that does not fit, ordered and worded as `coerce_rows` does over the rows
        found = sorted((index, needed.index(name), problem) for name in failing
                       for index, problem in column_problems(name, batch.column(name).python_values(),
                                                             kinds.get(name, "STRING")))
        problems = [problem for _, _, problem in found]
        raise IngestError(f"{len(problems)} value(s) do not fit table {spec.source.table}: {one_line(problems)}. "
                          "Fix them and ingest the file again; nothing landed")
    if beyond:
        raise beyond[0]
    if planned is not None:
        warehouse.ensure_table(spec.source.table, planned)
    ids = batch.row_ids()
    # One stamp for the file: the load commits every row at once, so the data-watcher never sees a
    # file half landed (a snapshot taken before the commit has none of it, and its watermark is older).
    stamp = pa.scalar(now or datetime.now(UTC), _TIMESTAMP)
    table = pa.table({ROW_ID_COLUMN: ids, INGESTED_AT_COLUMN: pa.repeat(stamp, len(batch)), **typed})
    already: set[str] = set()
    if planned is None:  # an existing table may hold rows of an earlier run of this very batch
        already = _present(warehouse, spec.source.table, ids)
        if already:
            table = table.filter(pc.invert(pc.is_in(ids, value_set=pa.array(sorted(already), pa.string()))))
    if table.num_rows:
        try:
            warehouse.load_arrow(spec.source.table, table)
        except WarehouseError as error:
            raise IngestError(f"the warehouse refused the rows (none landed): {error}") from None
    return Landed(rows=table.num_rows, already_there=len(already))


def ingest_labels(warehouse: Warehouse, pipeline: str, rows: Sequence[dict[str, Any]], label_column: str) -> int:
    """Late labels for served predictions, joined on `request_id` by the next snapshot."""
    if rows and ("request_id" not in rows[0] or label_column not in rows[0]):
        raise IngestError(f"a label file needs columns request_id and {label_column}; it has {sorted(rows[0])}")
    stamp = datetime.now(UTC).isoformat()
    prepared = [{"pipeline": pipeline, "request_id": str(r["request_id"]), "label": str(r[label_column]),
                 "labeled_at": stamp} for r in rows]
    for start in range(0, len(prepared), BATCH_ROWS):
        warehouse.insert_rows(LABELS_TABLE, prepared[start:start + BATCH_ROWS])
    return len(prepared)

