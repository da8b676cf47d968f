"""The portable linear artifact: a linear or logistic regression as weights on the RAW features.

One JSON file, `model.json`, whichever backend trained the model:
- the scikit-learn fit (`from_pipeline`) standardizes numeric features; the scaler is folded into
  the weights (w_raw = w / scale, intercept -= sum(w * mean / scale)), so serving never standardizes;
- BigQuery ML (`from_ml_weights`): `ML.WEIGHTS(MODEL m, STRUCT(FALSE AS standardize))` already
  gives weights on the raw features, and `ML.FEATURE_INFO` the training means NULLs are imputed with.

Its shape (`format` "mlops-linear-model", version 1): the model card (`mlops.ml.served.ModelCard`),
`link` (identity for LINEAR_REG, logistic for a binary LOGISTIC_REG whose one output is the logit of
the last class, softmax for a multiclass one, one output per class in `classes` order), `intercept`
(one per output), `numeric` {feature: {weights: [per output], null_value}} (a NULL is scored as its
training mean, as BigQuery ML imputes it) and `categorical` {feature: {weights: {category: [per
output]}}} where the NULL category is `__NULL__` when training saw NULLs there; any other category
(unseen, or NULL when training saw none) weighs 0, BigQuery ML's rule for one-hot encoded features.

Serving is a dot product in numpy; keys are sorted and floats written as Python's shortest repr, so
the same weights always make the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlops.ml.errors import ArtifactError, InputError
from mlops.ml.features import NULL_CATEGORY, FeatureKind, FeatureSpec, category_of
from mlops.ml.options import ModelType
from mlops.ml.served import ModelCard, ServedModel

LINEAR_FILE = "model.json"
LINEAR_FORMAT = "mlops-linear-model"
LINEAR_FORMAT_VERSION = 1
INTERCEPT_INPUT = "__INTERCEPT__"  # ML.WEIGHTS' row for the intercept
_LINKS = ("identity", "logistic", "softmax")


class LinearArtifactError(ArtifactError):
    """model.json is not a linear artifact this code can serve."""


class LinearModel(ServedModel):
    def __init__(self, card: ModelCard, link: str, intercept: Sequence[float],
                 numeric: Mapping[str, tuple[Sequence[float], float]],
                 categorical: Mapping[str, Mapping[str, Sequence[float]]]):
        if link not in _LINKS:
            raise LinearArtifactError(f"link {link!r} is not one of {list(_LINKS)}")
        self.card = card
        self.link = link
        self.intercept = np.asarray(intercept, dtype=float)
        outputs = len(self.intercept)
        expected = {"identity": 1, "logistic": 1, "softmax": len(card.classes or ())}[link]
        if outputs != expected or (link == "logistic" and len(card.classes or ()) != 2):
            raise LinearArtifactError(f"{outputs} outputs do not fit link {link!r} with classes {card.classes}")
        kinds = {spec.name: spec.kind for spec in card.features}
        missing = sorted(set(kinds) - set(numeric) - set(categorical))
        extra = sorted((set(numeric) | set(categorical)) - set(kinds))
        if missing or extra:
            raise LinearArtifactError(f"weights do not match the features: missing {missing}, unknown {extra}")
        self._numeric_names = [s.name for s in card.features if s.kind is FeatureKind.NUMERIC]
        self._categorical = [s for s in card.features if s.kind is not FeatureKind.NUMERIC]
        if any(kinds[name] is not FeatureKind.NUMERIC for name in numeric) or \
                any(kinds[name] is FeatureKind.NUMERIC for name in categorical):
            raise LinearArtifactError("a feature's weights do not match its kind")
        self.numeric_weights = np.array([list(map(float, numeric[n][0])) for n in self._numeric_names],
                                        dtype=float).reshape(len(self._numeric_names), outputs)
        self.null_values = np.array([float(numeric[n][1]) for n in self._numeric_names], dtype=float)
        self.category_weights = {name: {str(c): np.asarray(w, dtype=float) for c, w in by_category.items()}
                                 for name, by_category in categorical.items()}
        for name, by_category in self.category_weights.items():
            if any(w.shape != (outputs,) for w in by_category.values()):
                raise LinearArtifactError(f"feature {name!r}: category weights need {outputs} values each")
        if not (np.isfinite(self.intercept).all() and np.isfinite(self.numeric_weights).all()
                and np.isfinite(self.null_values).all()
                and all(np.isfinite(w).all() for c in self.category_weights.values() for w in c.values())):
            raise LinearArtifactError("weights must be finite numbers")
        self._zero = np.zeros(outputs)
        self._categories = {name: frozenset(by_category) for name, by_category in self.category_weights.items()}

    @property
    def categories(self) -> Mapping[str, frozenset[str]]:
        return self._categories

    # -- arithmetic ----------------------------------------------------------------------------
    def raw_outputs(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(rows, outputs): intercept + weights . raw features (the logits, or the values)."""
        n = len(rows)
        values = np.array([[np.nan if row.get(name) is None else float(row[name]) for name in self._numeric_names]
                           for row in rows], dtype=float).reshape(n, len(self._numeric_names))
        values = np.where(np.isnan(values), self.null_values, values)
        out = values @ self.numeric_weights + self.intercept
        for spec in self._categorical:
            weights = self.category_weights[spec.name]
            for i, row in enumerate(rows):
                out[i] += weights.get(category_of(spec.kind, row.get(spec.name)), self._zero)
        return out

    def _scores(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = self.raw_outputs(rows)
        if self.link == "identity":
            return out[:, 0]
        if self.link == "logistic":
            positive = 1.0 / (1.0 + np.exp(-out[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    # -- the file ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": LINEAR_FORMAT,
            "format_version": LINEAR_FORMAT_VERSION,
            "card": self.card.to_json(),
            "link": self.link,
            "intercept": [float(v) for v in self.intercept],
            "numeric": {name: {"weights": [float(v) for v in self.numeric_weights[i]],
                               "null_value": float(self.null_values[i])}
                        for i, name in enumerate(self._numeric_names)},
            "categorical": {name: {"weights": {c: [float(v) for v in w] for c, w in by_category.items()}}
                            for name, by_category in self.category_weights.items()},
        }

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8")

    @classmethod
    def loads(cls, data: bytes) -> LinearModel:
        try:
            doc = json.loads(data)
        except ValueError as error:
            raise LinearArtifactError(f"model.json is not JSON: {error}") from None
        if not isinstance(doc, dict) or doc.get("format") != LINEAR_FORMAT:
            raise LinearArtifactError(f"model.json lacks format {LINEAR_FORMAT!r}")
        if doc.get("format_version") != LINEAR_FORMAT_VERSION:
            raise LinearArtifactError(f"linear artifact format version {doc.get('format_version')} is not supported "
                                      f"(this code reads version {LINEAR_FORMAT_VERSION})")
        try:
            return cls(
                card=ModelCard.from_json(doc["card"]), link=doc["link"], intercept=doc["intercept"],
                numeric={name: (entry["weights"], entry["null_value"]) for name, entry in doc["numeric"].items()},
                categorical={name: entry["weights"] for name, entry in doc["categorical"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, LinearArtifactError):
                raise
            raise LinearArtifactError(f"model.json invalid: {type(error).__name__}: {error}") from None


def link_for(model_type: ModelType, classes: Sequence[Any] | None) -> str:
    if not model_type.is_classifier:
        return "identity"
    return "logistic" if len(classes or ()) == 2 else "softmax"


# ---------------------------------------------------------------------------------------------------
# From a scikit-learn fit: fold the imputer and scaler into the weights
# ---------------------------------------------------------------------------------------------------

def from_pipeline(card: ModelCard, pipeline: Any) -> LinearModel:
    """The pipeline `mlops.ml.training` fits for LINEAR_REG / LOGISTIC_REG (impute + standardize numeric
    columns, one-hot the others, then the linear estimator) as raw-feature weights."""
    preprocess, estimator = pipeline.named_steps["preprocess"], pipeline.named_steps["model"]
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=float)).copy()
    numeric: dict[str, tuple[list[float], float]] = {}
    categorical: dict[str, dict[str, list[float]]] = {}
    offset = 0
    for name, transformer, columns in preprocess.transformers_:
        if name == "numeric":
            imputer, scaler = transformer.named_steps["impute_mean"], transformer.named_steps["standardize"]
            means = scaler.mean_ if scaler.with_mean else np.zeros(len(columns))
            scales = scaler.scale_ if scaler.with_std else np.ones(len(columns))
            for j, column in enumerate(columns):
                w = coef[:, offset + j] / scales[j]
                intercept -= w * means[j]
                numeric[card.features[int(column)].name] = ([float(v) for v in w], float(imputer.statistics_[j]))
            offset += len(columns)
        elif name == "one_hot":
            for column, learned in zip(columns, transformer.categories_, strict=True):
                categorical[card.features[int(column)].name] = {
                    str(category): [float(v) for v in coef[:, offset + k]] for k, category in enumerate(learned)}
                offset += len(learned)
        elif not (name == "remainder" and transformer == "drop"):
            raise ValueError(f"unexpected preprocessing step {name!r}")
    if offset != coef.shape[1]:
        raise ValueError(f"the encoding has {offset} columns, the estimator {coef.shape[1]}")
    return LinearModel(card, link_for(card.model_type, card.classes), [float(v) for v in intercept], numeric,
                       categorical)


# ---------------------------------------------------------------------------------------------------
# From BigQuery ML: ML.WEIGHTS (standardize FALSE) and ML.FEATURE_INFO
# ---------------------------------------------------------------------------------------------------

def from_ml_weights(card: ModelCard, weights: Sequence[Mapping[str, Any]],
                    feature_info: Sequence[Mapping[str, Any]]) -> LinearModel:
    """The linear artifact of a BigQuery ML model from its ML.WEIGHTS rows, as documented: one row per
    `processed_input` (per `class_label` too for a multiclass model), `weight` for a numeric input,
    `category_weights` (ARRAY<STRUCT<category STRING, weight FLOAT64>>) for a one-hot encoded one,
    `__INTERCEPT__` for the intercept. A binary model's weights are taken as the logit of the last
    (positive) class, as ML.EVALUATE's metrics treat it. A NULL category is the NULL category
    (`__NULL__`); a NULL numeric input is scored as its training mean (ML.FEATURE_INFO's `mean`)."""
    link = link_for(card.model_type, card.classes)
    if link == "softmax":
        assert card.classes is not None
        outputs = [str(c) for c in card.classes]
    else:
        outputs = [""]
    by_output: dict[str, dict[str, Mapping[str, Any]]] = {o: {} for o in outputs}
    row: Mapping[str, Any] | None
    for row in weights:
        label = str(row.get("class_label")) if link == "softmax" else ""
        if label not in by_output:
            raise LinearArtifactError(f"ML.WEIGHTS names class {label!r}, not one of {outputs}")
        by_output[label][str(row["processed_input"])] = row
    means = {str(r["input"]): r.get("mean") for r in feature_info}
    intercept: list[float] = []
    numeric: dict[str, tuple[list[float], float]] = {}
    categorical: dict[str, dict[str, list[float]]] = {}
    problems: list[str] = []
    for k, output in enumerate(outputs):
        rows = by_output[output]
        intercept.append(float((rows.get(INTERCEPT_INPUT) or {}).get("weight") or 0.0))
        for spec in card.features:
            row = rows.get(spec.name)
            if row is None:
                problems.append(f"ML.WEIGHTS has no row for feature {spec.name!r}" + (f" class {output!r}" if output else ""))
                continue
            if spec.kind is FeatureKind.NUMERIC:
                mean = means.get(spec.name)
                entry = numeric.setdefault(spec.name, ([0.0] * len(outputs), float(mean) if mean is not None and _finite(mean) else 0.0))
                entry[0][k] = float(row.get("weight") or 0.0)
            else:
                by_category = categorical.setdefault(spec.name, {})
                for item in row.get("category_weights") or ():
                    category = NULL_CATEGORY if item.get("category") is None else str(item["category"])
                    by_category.setdefault(category, [0.0] * len(outputs))[k] = float(item.get("weight") or 0.0)
    if problems:
        raise LinearArtifactError("; ".join(problems))
    return LinearModel(card, link, intercept, numeric, categorical)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def feature_kind_of(bigquery_type: str) -> FeatureKind:
    """A snapshot column's BigQuery type as a feature kind (what BigQuery ML one-hot encodes or not)."""
    kind = bigquery_type.upper()
    if kind in ("INT64", "INTEGER", "FLOAT64", "FLOAT", "NUMERIC", "BIGNUMERIC", "DECIMAL", "BIGDECIMAL"):
        return FeatureKind.NUMERIC
    if kind in ("BOOL", "BOOLEAN"):
        return FeatureKind.BOOL
    if kind == "STRING":
        return FeatureKind.STRING
    raise InputError(f"column type {bigquery_type} is not a feature type this loop serves (numbers, STRING, BOOL)")


def feature_specs_of(columns: Sequence[tuple[str, str]], feature_columns: Sequence[str]) -> tuple[FeatureSpec, ...]:
    types = dict(columns)
    missing = [name for name in feature_columns if name not in types]
    if missing:
        raise InputError(f"feature columns {missing} are not in the table")
    return tuple(FeatureSpec(name, feature_kind_of(types[name])) for name in feature_columns)
