"""Boosted trees (and random forests) as BigQuery ML makes them: XGBoost, in its EXPORT MODEL layout.

The folder (what `EXPORT MODEL` writes for BOOSTED_TREE_* / RANDOM_FOREST_*, read the way Google's
own predictor for it reads it, `bigquery_ml_utils.inference.xgboost_predictor`):
- `model.bst`: the XGBoost booster;
- `assets/model_metadata.json`: `model_type` (lower case), `label_col`, `feature_names` (the training
  order, one booster column each unless one-hot), `features` {name: {encode_type}} and, for a
  classifier, `class_names` (the booster's output columns, in order);
- `assets/<i>_categorical_label.txt` (legacy name `<i>.txt`): the vocabulary of STRING/BOOL feature
  number i, one category a line; a value is encoded as its line number, anything else (an unseen
  category, NULL) as missing. `<i>_categorical_one_hot.txt` (one column per line, 1 or missing) is read
  too. Other encodings (target, arrays) are refused: this loop trains none.
- BigQuery also writes `main.py` and `xgboost_predictor-0.1.tar.gz` (its Python predictor); they
  are part of the folder's checksum and otherwise ignored.
- `mlops_model.json`: this project's model card (feature kinds, label type, options, training
  summary, drift reference), written beside the export by either backend.

The booster's format. BigQuery ML documents its export as "Booster (XGBoost 0.82)": the legacy
binary format, which XGBoost deprecated in 1.6 and REMOVED in 3.1 (3.2 says "The binary format has
been deprecated in 1.6 and removed in 3.1, use UBJ or JSON instead"). So xgboost >= 3.1 loads UBJ
and JSON boosters only; `booster_format` tells them apart and a legacy one is refused with that
reason (`port_legacy_booster` re-saves one as UBJ where the installed xgboost still reads it).
The local twin writes UBJ with xgboost's own `save_model`.

Training maps BigQuery ML's option names onto XGBoost's (`booster_params`); classifiers use
`multi:softprob` with one output per class even when binary, as BigQuery ML's exported predictor
expects (it takes the arg-max of a probability vector). Trained with one thread and a fixed seed,
so a replay makes the same trees and the same bytes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.ml.errors import ArtifactError
from mlops.ml.features import FeatureKind, FeatureSpec, category_of
from mlops.ml.options import ModelOptions, ModelType, option_value
from mlops.ml.served import ModelCard, ServedModel
from mlops.ml.tree_walk import WALK_MAX_ROWS, compile_booster

if TYPE_CHECKING:
    import xgboost

BOOSTER_FILE = "model.bst"
TREE_METADATA_FILE = "assets/model_metadata.json"
CARD_FILE = "mlops_model.json"
CARD_FORMAT = "mlops-model-card"
CARD_FORMAT_VERSION = 1
NUMERICAL = "numerical_identity"
LABEL_ENCODED = "categorical_label"
ONE_HOT = "categorical_one_hot"
TREE_MODEL_TYPES = frozenset({ModelType.BOOSTED_TREE_CLASSIFIER, ModelType.BOOSTED_TREE_REGRESSOR,
                              ModelType.RANDOM_FOREST_CLASSIFIER})


class TreeArtifactError(ArtifactError):
    """The folder is not an XGBoost export this code can serve."""


def booster_format(data: bytes) -> str:
    """'json', 'ubj' or 'legacy-binary' (what XGBoost < 1.6 wrote by default, and BigQuery ML documents)."""
    head = data.lstrip()[:1]
    if head == b"{":
        return "json" if data.lstrip()[1:2] in (b'"', b" ", b"\n", b"\r", b"\t", b"}") else "ubj"
    return "legacy-binary"


def load_booster(data: bytes) -> xgboost.Booster:
    import xgboost

    kind = booster_format(data)
    if kind == "legacy-binary":
        raise TreeArtifactError(
            f"{BOOSTER_FILE} is in XGBoost's legacy binary format (BigQuery ML documents its export as XGBoost "
            f"0.82), which xgboost {xgboost.__version__} no longer reads (removed in 3.1): re-save it as UBJ "
            "with xgboost 3.0 or older (mlops.ml.trees.port_legacy_booster)")
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgboost.core.XGBoostError as error:
        raise TreeArtifactError(f"{BOOSTER_FILE} is not a booster xgboost can load: {str(error).splitlines()[0]}") from None
    # Serving runs a few rows at a time on a small machine: threads cost more than they save.
    booster.set_param({"nthread": 1})
    return booster


def port_legacy_booster(data: bytes) -> bytes:
    """A legacy binary booster re-saved as UBJ; works only with an xgboost that still reads the legacy
    format (< 3.1), else raises TreeArtifactError saying so."""
    import xgboost

    if booster_format(data) != "legacy-binary":
        return data
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgboost.core.XGBoostError:
        raise TreeArtifactError(
            f"the exported {BOOSTER_FILE} is XGBoost's legacy binary format; xgboost {xgboost.__version__} cannot "
            "read it (removed in 3.1): install xgboost-cpu<3.1 where the export is ported") from None
    return bytes(booster.save_raw("ubj"))


# ---------------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------------

class TreeModel(ServedModel):
    """An exported XGBoost model, scored with the booster's in-place prediction; up to WALK_MAX_ROWS
    rows by walking its trees compiled to numpy (`mlops.ml.tree_walk`, the same outputs without
    inplace_predict's fixed per-call cost), where the booster compiles."""

    def __init__(self, card: ModelCard, booster: Any, encodings: Sequence[tuple[FeatureSpec, str, Sequence[str]]],
                 class_order: Sequence[int] | None = None):
        self.card = card
        self.booster = booster
        self._walk = compile_booster(booster) if booster is not None else None
        self._encodings = [(spec, encoding, {c: i for i, c in enumerate(vocab)}) for spec, encoding, vocab in encodings]
        self._width = sum(len(vocab) if encoding == ONE_HOT else 1 for _, encoding, vocab in self._encodings)
        self._class_order = list(class_order) if class_order is not None else None
        self._categories = {spec.name: frozenset(vocab) for spec, encoding, vocab in self._encodings
                            if encoding != NUMERICAL}

    @property
    def categories(self) -> Mapping[str, frozenset[str]]:
        return self._categories

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The booster's input: one row per instance, NaN for missing (NULL, an unseen category)."""
        matrix = np.full((len(rows), self._width), np.nan, dtype=np.float32)
        column = 0
        for spec, encoding, vocab in self._encodings:
            if encoding == NUMERICAL:
                matrix[:, column] = [np.nan if row.get(spec.name) is None else float(row[spec.name]) for row in rows]
                column += 1
            elif encoding == LABEL_ENCODED:
                matrix[:, column] = [vocab.get(category_of(spec.kind, row.get(spec.name)), np.nan) for row in rows]
                column += 1
            else:
                for i, row in enumerate(rows):
                    hit = vocab.get(category_of(spec.kind, row.get(spec.name)))
                    if hit is not None:
                        matrix[i, column + hit] = 1.0
                column += len(vocab)
        return matrix

    def _scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        matrix = self.encode(rows)
        if self._walk is not None and 0 < len(rows) <= WALK_MAX_ROWS:
            out = np.asarray(self._walk.predict(matrix), dtype=float)
        else:
            out = np.asarray(self.booster.inplace_predict(matrix), dtype=float)
        if not self.is_classifier:
            return out.reshape(len(rows))
        if out.ndim == 1:  # binary:logistic: the positive (last) class's probability
            out = np.column_stack([1.0 - out, out])
        return out[:, self._class_order] if self._class_order is not None else out


def tree_model_from_files(files: Mapping[str, bytes]) -> TreeModel:
    try:
        metadata = json.loads(files[TREE_METADATA_FILE])
    except KeyError:
        raise TreeArtifactError(f"no {TREE_METADATA_FILE} beside {BOOSTER_FILE}") from None
    except ValueError as error:
        raise TreeArtifactError(f"{TREE_METADATA_FILE} is not JSON: {error}") from None
    try:
        names = [str(n) for n in metadata["feature_names"]]
        described = metadata.get("features") or {}
        encodings_by_name: dict[str, tuple[str, list[str]]] = {}
        for index, name in enumerate(names):
            encoding = (described.get(name) or {}).get("encode_type") or NUMERICAL
            if encoding == "ohe":  # an older name of the label encoding in Google's predictor
                encoding = LABEL_ENCODED
            if encoding == NUMERICAL:
                encodings_by_name[name] = (NUMERICAL, [])
            elif encoding in (LABEL_ENCODED, ONE_HOT):
                encodings_by_name[name] = (encoding, _vocabulary(files, index, encoding))
            else:
                raise TreeArtifactError(f"feature {name!r}: encode_type {encoding!r} is not served by this loop")
        card = _card(files, metadata, names, encodings_by_name)
        if [spec.name for spec in card.features] != names:
            raise TreeArtifactError(f"{CARD_FILE} features {[s.name for s in card.features]} differ from the "
                                    f"booster's feature_names {names}")
        class_order = _class_order(card, metadata)
    except (KeyError, TypeError, AttributeError) as error:
        raise TreeArtifactError(f"{TREE_METADATA_FILE} invalid: {type(error).__name__}: {error}") from None
    booster = load_booster(files[BOOSTER_FILE])
    encodings = [(spec, *encodings_by_name[spec.name]) for spec in card.features]
    width = sum(len(vocab) if enc == ONE_HOT else 1 for _, enc, vocab in encodings)
    if booster.num_features() != width:
        raise TreeArtifactError(f"the booster takes {booster.num_features()} columns, the metadata describes {width}")
    return TreeModel(card, booster, encodings, class_order)


def _vocabulary(files: Mapping[str, bytes], index: int, encoding: str) -> list[str]:
    for name in (f"assets/{index}_{encoding}.txt", f"assets/{index}.txt"):
        if name in files:
            return files[name].decode("utf-8").splitlines()
    raise TreeArtifactError(f"feature number {index} is {encoding} but assets/{index}_{encoding}.txt is missing")


def _card(files: Mapping[str, bytes], metadata: Mapping[str, Any], names: Sequence[str],
          encodings: Mapping[str, tuple[str, list[str]]]) -> ModelCard:
    if CARD_FILE in files:
        try:
            doc = json.loads(files[CARD_FILE])
            if doc.get("format") != CARD_FORMAT or doc.get("format_version") != CARD_FORMAT_VERSION:
                raise TreeArtifactError(f"{CARD_FILE} is not a version {CARD_FORMAT_VERSION} {CARD_FORMAT!r}")
            return ModelCard.from_json(doc["card"])
        except (ValueError, KeyError, TypeError) as error:
            if isinstance(error, TreeArtifactError):
                raise
            raise TreeArtifactError(f"{CARD_FILE} invalid: {type(error).__name__}: {error}") from None
    # An export alone: what BigQuery's metadata says (categories as text, labels as text).
    kind = ModelType(str(metadata["model_type"]).upper())
    classes = tuple(str(c) for c in metadata["class_names"]) if kind.is_classifier else None
    features = tuple(FeatureSpec(name, FeatureKind.NUMERIC if encodings[name][0] == NUMERICAL else FeatureKind.STRING)
                     for name in names)
    return ModelCard(kind, features, str(metadata["label_col"]), tuple(sorted(classes)) if classes else None,
                     trained_by="bigquery-ml")


def _class_order(card: ModelCard, metadata: Mapping[str, Any]) -> list[int] | None:
    """Which booster output column holds each of the card's classes (class_names are text)."""
    if not card.is_classifier:
        return None
    assert card.classes is not None
    names = [str(c) for c in metadata.get("class_names") or ()]
    wanted = [_label_text(c) for c in card.classes]
    if sorted(names) != sorted(wanted):
        raise TreeArtifactError(f"class_names {names} do not match the model's classes {list(card.classes)}")
    return [names.index(w) for w in wanted]


def _label_text(label: Any) -> str:
    """A label as BigQuery writes it as text (CAST(x AS STRING)): TRUE as 'true'."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


# ---------------------------------------------------------------------------------------------------
# Writing the export layout
# ---------------------------------------------------------------------------------------------------

def tree_metadata(card: ModelCard, vocabularies: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "model_type": card.model_type.value.lower(),
        "label_col": card.label_column,
        "feature_names": [spec.name for spec in card.features],
        "features": {spec.name: {"encode_type": NUMERICAL if spec.kind is FeatureKind.NUMERIC else LABEL_ENCODED}
                     for spec in card.features},
    }
    if card.is_classifier:
        assert card.classes is not None
        metadata["class_names"] = [_label_text(c) for c in card.classes]
    return metadata


def card_file(card: ModelCard) -> bytes:
    return _json_bytes({"format": CARD_FORMAT, "format_version": CARD_FORMAT_VERSION, "card": card.to_json()})


def export_files(card: ModelCard, booster: Any, vocabularies: Mapping[str, Sequence[str]]) -> dict[str, bytes]:
    """The folder as BigQuery ML's EXPORT MODEL lays it out (booster saved by xgboost itself), plus the
    card. Vocabularies are per STRING/BOOL feature, in encoding order."""
    files = {TREE_METADATA_FILE: _json_bytes(tree_metadata(card, vocabularies)), CARD_FILE: card_file(card)}
    for index, spec in enumerate(card.features):
        if spec.kind is not FeatureKind.NUMERIC:
            files[f"assets/{index}_{LABEL_ENCODED}.txt"] = "".join(f"{c}\n" for c in vocabularies[spec.name]).encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / BOOSTER_FILE
        booster.save_model(str(path))  # no known extension: xgboost writes UBJ, its default
        files[BOOSTER_FILE] = path.read_bytes()
    return files


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------------
# Training, with BigQuery ML's option names
# ---------------------------------------------------------------------------------------------------

def booster_params(kind: ModelType, options: ModelOptions, *, seed: int, num_class: int | None) -> tuple[dict[str, Any], int]:
    """XGBoost parameters and boosting rounds for a BigQuery ML model type and options (defaults are
    BigQuery ML's). A random forest is one round of `num_parallel_tree` trees at learning rate 1."""
    def value(name: str) -> Any:
        return option_value(kind, options, name)

    params: dict[str, Any] = {
        "max_depth": int(value("max_tree_depth")),
        "subsample": float(value("subsample")),
        "alpha": float(value("l1_reg")),
        "lambda": float(value("l2_reg")),
        "gamma": float(value("min_split_loss")),
        "min_child_weight": float(value("min_tree_child_weight")),
        "colsample_bytree": float(value("colsample_bytree")),
        "num_parallel_tree": int(value("num_parallel_tree")),
        "tree_method": "hist",
        "seed": seed,
        "nthread": 1,  # the same trees (and bytes) whatever the machine's cores
        "verbosity": 0,
    }
    if kind is ModelType.RANDOM_FOREST_CLASSIFIER:
        params.update(booster="gbtree", eta=1.0)
        rounds = 1
    else:
        params.update(booster=str(value("booster_type")).lower(), eta=float(value("learn_rate")))
        rounds = int(value("max_iterations"))
    if kind.is_classifier:
        params.update(objective="multi:softprob", num_class=int(num_class or 2), eval_metric="mlogloss")
    else:
        params.update(objective="reg:squarederror", eval_metric="rmse")
    return params, rounds


def vocabularies_of(rows: Sequence[Mapping[str, Any]], features: Sequence[FeatureSpec]) -> dict[str, list[str]]:
    """Each STRING/BOOL feature's training categories, sorted (NULL is missing, not a category)."""
    return {spec.name: sorted({category_of(spec.kind, row.get(spec.name)) for row in rows
                               if row.get(spec.name) is not None})
            for spec in features if spec.kind is not FeatureKind.NUMERIC}


def fit_trees(card: ModelCard, options: ModelOptions, rows: Sequence[Mapping[str, Any]], labels: Sequence[Any],
              *, seed: int, sample_weight: Sequence[float] | None) -> tuple[TreeModel, dict[str, bytes], int]:
    """Train with xgboost; returns the servable model (loaded back from the exported bytes, so it is
    exactly what will serve), the folder's files and the rounds run (early_stop ends training at the
    first round improving the training loss by less than min_rel_progress; the card records them)."""
    import xgboost

    kind = card.model_type
    vocabularies = vocabularies_of(rows, card.features)
    encodings = [(spec, NUMERICAL if spec.kind is FeatureKind.NUMERIC else LABEL_ENCODED,
                  vocabularies.get(spec.name, [])) for spec in card.features]
    encoder = TreeModel(card, None, encodings)
    if kind.is_classifier:
        assert card.classes is not None
        index = {label: i for i, label in enumerate(card.classes)}
        target = np.array([index[label] for label in labels], dtype=float)
    else:
        target = np.array([float(v) for v in labels], dtype=float)
    params, rounds = booster_params(kind, options, seed=seed,
                                    num_class=len(card.classes) if card.classes is not None else None)
    train = xgboost.DMatrix(encoder.encode(rows), label=target, weight=None if sample_weight is None
                            else np.asarray(sample_weight, dtype=float), nthread=1)
    stopper = _RelativeProgress(float(option_value(kind, options, "min_rel_progress")))
    early = bool(option_value(kind, options, "early_stop")) and kind is not ModelType.RANDOM_FOREST_CLASSIFIER
    booster = xgboost.train(params, train, num_boost_round=rounds, evals=[(train, "train")] if early else (),
                            callbacks=[stopper] if early else None, verbose_eval=False)
    rounds_run = booster.num_boosted_rounds()
    card = replace(card, training={**card.training, "iterations": rounds_run})
    files = export_files(card, booster, vocabularies)
    return tree_model_from_files(files), files, rounds_run


class _RelativeProgress:
    """Stop once a round improves the training loss by less than `min_rel_progress` of the loss before
    it (BigQuery ML's early_stop rule, on the loss XGBoost reports for the training rows)."""

    def __new__(cls, min_rel_progress: float) -> Any:
        import xgboost

        class Callback(xgboost.callback.TrainingCallback):
            def __init__(self) -> None:
                super().__init__()
                self.previous: float | None = None

            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                history = next(iter(evals_log.get("train", {}).values()), None)
                if not history:
                    return False
                loss = float(history[-1])
                previous, self.previous = self.previous, loss
                if previous is None or previous <= 0:
                    return False
                return (previous - loss) / previous < min_rel_progress

        return Callback()


def is_tree_model(kind: ModelType) -> bool:
    return kind in TREE_MODEL_TYPES

