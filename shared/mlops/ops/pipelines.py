"""Pipeline specs from the operator's side: apply one (checked against its table, then the data-watcher
told to look again), name the known ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlops.core.spec import PipelineSpec, SpecError, load_spec
from mlops.ops.errors import OperatorError
from mlops.ops.validate import one_line, spec_problems
from mlops.ports.specs import UnknownPipeline

if TYPE_CHECKING:  # the read commands import this module too: no event codec for them
    from mlops.ports.bus import EventBus


class SpecReader(Protocol):
    def get(self, name: str) -> PipelineSpec: ...

    def names(self) -> list[str]: ...


class SpecWriter(SpecReader, Protocol):
    def put(self, spec: PipelineSpec) -> str: ...


class ColumnReader(Protocol):
    def table_columns(self, table: str) -> list[tuple[str, str]] | None: ...


class PipelineError(OperatorError):
    pass


class TickNotSent(OperatorError):
    """The spec is stored, but the data-watcher could not be told to look again."""

    exit_code = 1


@dataclass(frozen=True)
class Applied:
    spec: PipelineSpec
    uri: str
    checked: bool  # the source table existed, and the spec fits it
    tick_id: str = ""  # the `watch.tick` (spec_applied) sent for it, if any


def read_spec_file(path: Path) -> PipelineSpec:
    """A spec file parsed and validated (its model options too); every problem in one message."""
    from mlops.ml.errors import ModelOptionsError
    from mlops.ml.options import parse_model_options

    try:
        spec = load_spec(path)
        parse_model_options(spec.model.type, spec.model.options)
    except FileNotFoundError:
        raise PipelineError(f"no file {path}") from None
    except IsADirectoryError:
        raise PipelineError(f"{path} is a folder, not a spec file") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path} is not UTF-8 text") from None
    except (SpecError, ModelOptionsError) as error:
        raise PipelineError(str(error)) from None
    return spec


def apply_spec(specs: SpecWriter, warehouse: ColumnReader, path: Path, bus: EventBus | None = None) -> Applied:
    """Store a spec where every service reads it, after checking it against its source table when
    the table exists. With a bus and a table, then publish a `watch.tick` (`spec_applied`) for the
    pipeline: rows a bad spec left pending, or a changed model or gate, are retrained at once
    rather than at the next schedule or ingest (the data-watcher decides, and says so)."""
    from mlops.core.events import TickReason
    from mlops.ops.ticks import publish_tick

    spec = read_spec_file(path)
    columns = warehouse.table_columns(spec.source.table)
    if columns is not None:
        problems = spec_problems(spec, columns)
        if problems:
            raise PipelineError(f"{path}: {one_line(problems, shown=4)}; fix the spec (nothing was applied)")
    uri = specs.put(spec)
    if bus is None or columns is None:  # no table: no rows for the watcher to look at yet
        return Applied(spec, uri, columns is not None)
    try:
        tick_id = publish_tick(bus, spec.name, TickReason.SPEC_APPLIED)
    except Exception as error:  # noqa: BLE001 - the spec is stored: say what did not happen, and what to do
        raise TickNotSent(f"pipeline {spec.name} applied ({uri}), but the data-watcher was not told to look again "
                          f"({type(error).__name__}: {str(error)[:200]}); `mlops trigger --pipeline {spec.name}` "
                          "or its next tick does") from None
    return Applied(spec, uri, True, tick_id)


def known_pipelines(specs: SpecReader) -> list[str]:
    return sorted(specs.names())


def require_pipeline(specs: SpecReader, name: str) -> PipelineSpec:
    """The named pipeline's spec; a name that is not known is a mistake that names the known ones."""
    try:
        return specs.get(name)
    except UnknownPipeline:
        known = known_pipelines(specs)
        raise PipelineError(f"no pipeline {name!r}; known: {', '.join(known) or 'none yet'} "
                            "(apply a spec with `mlops pipeline apply FILE`)") from None


def require_pipelines(specs: SpecReader, name: str | None) -> list[str]:
    """[name] when it is known, every known pipeline when `name` is None; never an empty answer."""
    known = known_pipelines(specs)
    if name is None:
        if not known:
            raise PipelineError("no pipelines yet: apply a spec with `mlops pipeline apply FILE`")
        return known
    if name not in known:
        raise PipelineError(f"no pipeline {name!r}; known: {', '.join(known) or 'none yet'} "
                            "(apply a spec with `mlops pipeline apply FILE`)")
    return [name]


def summary(spec: PipelineSpec) -> dict[str, Any]:
    """One line of `mlops pipeline list`."""
    retrain = spec.retrain
    when = [f"+{retrain.new_rows_fraction:.0%} rows" if retrain.new_rows_fraction else "",
            f"+{retrain.new_rows_min} rows" if retrain.new_rows_min else "",
            f"PSI>{retrain.drift_psi}" if retrain.drift_psi else "",
            f"every {retrain.schedule_seconds}s" if retrain.schedule_seconds else ""]
    gate = spec.promotion
    tolerance = getattr(gate, "tolerance", 0.0)  # the gate's other criterion (issue 11, loop side)
    versus = f"within {tolerance} of the champion" if tolerance else f"gain >= {gate.min_gain}"
    return {
        "name": spec.name, "table": spec.source.table, "label": spec.source.label,
        "features": len(spec.source.features), "model": spec.model.type,
        "retrain": ", ".join(w for w in when if w) or "manual only",
        "gate": f"{gate.metric}" + (f" >= {gate.minimum}" if gate.minimum is not None else "")
                + f", {versus}",
    }
