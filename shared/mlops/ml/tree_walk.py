"""A loaded XGBoost booster's trees as flat numpy arrays, walked all at once for a few rows.

Why: `Booster.inplace_predict` costs a fixed ~0.5 ms of CPU per call (array-interface parsing, its
thread set-up) even for one row and a 20-tree model, and one row is the predictor's common request.
Walking every tree at once costs one handful of numpy operations per tree level instead, so small
batches take this path and larger ones (where XGBoost's per-row speed wins) keep `inplace_predict`.

Read from the booster's own JSON model (`save_raw("json")`, XGBoost's documented model schema):
- `learner.gradient_booster`: `gbtree` (or `dart`, whose `gbtree` is wrapped with `weight_drop`, one
  weight per tree, applied at prediction); `model.trees[i]` has `left_children`, `right_children`
  (-1 at a leaf), `split_indices`, `split_conditions` (the threshold at a split, the leaf's value at a
  leaf), `default_left` (where a missing value goes) and `split_type` (0 numerical; 1 categorical,
  not compiled: this project encodes categories as numbers); `model.tree_info[i]` is the output
  group (class) tree i adds to.
- `learner.learner_model_param`: `base_score`, since 3.1 a vector `[...]` (one per class), in the
  objective's output space (a probability for the logistic objectives, see
  `ObjFunction::ProbToMargin`); older boosters store one number. `num_class`, `num_target`.
- `learner.objective.name`: how margins become outputs.

The rule a split applies (`RegTree::GetNext`): a missing value (NaN) goes to the default child,
otherwise left when `value < split_condition`. XGBoost sums in float32, starting from the base margin
and adding tree after tree in order (`cpu_predictor.cc`); this walk does the same, so margins equal
XGBoost's bit for bit and outputs (after a sigmoid or softmax) agree to float32 rounding.

Anything else (other boosters, objectives, categorical splits, vector leaves) compiles to None and the
caller keeps `inplace_predict`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Rows up to which the walk is cheaper than inplace_predict's fixed per-call cost (bench.serving_cost
# and the measurements in docs/performance.md section 5).
WALK_MAX_ROWS = 32

_SIGMOID = frozenset({"binary:logistic", "reg:logistic"})
_SOFTMAX = frozenset({"multi:softprob"})
_IDENTITY = frozenset({"reg:squarederror", "reg:linear", "reg:absoluteerror", "reg:pseudohubererror"})


@dataclass(frozen=True)
class CompiledTrees:
    """Every tree of a booster in one node table. Each output group's columns are, in order, a
    constant pseudo-tree holding the base margin, then the group's trees in boosting order. Nodes are
    renumbered so a split's right child is its left child + 1; a leaf is its own child with a NaN
    threshold, so walking past a leaf stays on it."""

    left: np.ndarray        # (nodes,) intp: the left child (a leaf: itself)
    column: np.ndarray      # (nodes,) intp: the feature, + width when missing goes right
    threshold: np.ndarray   # (nodes,) float32: split_condition; NaN at a leaf
    value: np.ndarray       # (nodes,) float32: what the leaf adds (dart: weighted); 0 at a split
    roots: np.ndarray       # (groups * per_group,) intp
    groups: int
    width: int
    depth: int
    transform: str          # "sigmoid", "softmax" or "identity"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """What `booster.inplace_predict(x)` returns for this (rows, width) float32 matrix."""
        rows = x.shape[0]
        missing = np.isnan(x)
        # Two copies of the row: NaN as -inf (so `>= threshold` is False: left) then as +inf (True:
        # right); a node reads the copy its default direction picks, through its column number.
        both = np.empty((rows, 2 * self.width), dtype=np.float32)
        both[:, :self.width] = np.where(missing, -np.inf, x)
        both[:, self.width:] = np.where(missing, np.inf, x)
        flat = both.ravel()
        # One flat position per (row, tree): `take` on 1-d arrays is the cheapest numpy gather, and
        # a few numpy calls per tree level is the whole cost for a small batch.
        trees = len(self.roots)
        nodes = np.tile(self.roots, rows)
        offsets = np.repeat(np.arange(rows, dtype=np.intp) * (2 * self.width), trees)
        left, column, threshold = self.left, self.column, self.threshold
        for _ in range(self.depth):
            nodes = left.take(nodes) + (flat.take(column.take(nodes) + offsets) >= threshold.take(nodes))
        leaves = self.value.take(nodes).reshape(rows, self.groups, -1)
        # Sequential float32 sums from the base margin, tree by tree, as XGBoost adds them.
        margins = np.cumsum(leaves, axis=2, dtype=np.float32)[:, :, -1]
        if self.transform == "softmax":
            shifted = np.exp(margins.astype(np.float64) - margins.max(axis=1, keepdims=True))
            return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        out = margins[:, 0] if self.groups == 1 else margins
        if self.transform == "sigmoid":
            return (1.0 / (1.0 + np.exp(-out.astype(np.float64)))).astype(np.float32)
        return out


def compile_booster(booster: Any) -> CompiledTrees | None:
    """The booster's trees compiled for `CompiledTrees.predict`, or None if it uses anything the walk
    does not reproduce (the caller then keeps `inplace_predict`)."""
    return compile_model(json.loads(bytes(booster.save_raw("json"))))


def compile_model(doc: Mapping[str, Any]) -> CompiledTrees | None:
    try:
        learner = doc["learner"]
        params = learner["learner_model_param"]
        objective = str(learner["objective"]["name"])
        booster = learner["gradient_booster"]
        if int(params.get("num_target", "1")) != 1:
            return None
        if booster["name"] == "gbtree":
            model, weights = booster["model"], None
        elif booster["name"] == "dart":
            model, weights = booster["gbtree"]["model"], [float(w) for w in booster["weight_drop"]]
        else:
            return None
        groups = max(int(params.get("num_class", "0")), 1)
        width = int(params["num_feature"])
        base = _base_margins(str(params["base_score"]), objective, groups)
        trees, tree_info = model["trees"], [int(g) for g in model["tree_info"]]
    except (KeyError, TypeError, ValueError):
        return None
    if base is None or len(trees) != len(tree_info) or (weights is not None and len(weights) != len(trees)):
        return None
    per_group: list[list[int]] = [[] for _ in range(groups)]
    for index, group in enumerate(tree_info):
        if not 0 <= group < groups:
            return None
        per_group[group].append(index)
    if len({len(members) for members in per_group}) != 1:
        return None
    table = _NodeTable(width)
    roots: list[int] = []
    for group, members in enumerate(per_group):
        roots.append(table.add_leaf(float(base[group])))
        # dart's inplace prediction (`Dart::InplacePredict`) predicts each tree alone from the base
        # margin, then adds (that - base) * weight, in float32: not exactly leaf * weight.
        for index in members:
            root = table.add_tree(trees[index], None if weights is None else (weights[index], base[group]))
            if root is None:
                return None
            roots.append(root)
    transform = "sigmoid" if objective in _SIGMOID else "softmax" if objective in _SOFTMAX else "identity"
    return CompiledTrees(
        left=np.asarray(table.left, dtype=np.intp), column=np.asarray(table.column, dtype=np.intp),
        threshold=np.asarray(table.threshold, dtype=np.float32), value=np.asarray(table.value, dtype=np.float32),
        roots=np.asarray(roots, dtype=np.intp), groups=groups, width=width, depth=table.depth, transform=transform)


def _base_margins(text: str, objective: str, groups: int) -> list[np.float32] | None:
    """base_score ("5E-1" or, since 3.1, "[5E-1]" / one per class) as margins, in float32 as XGBoost
    computes them. Stored in output space: the logistic objectives' ProbToMargin is the logit; the
    others compiled here (squared error, softprob) store margins as they are."""
    if objective not in _SIGMOID | _SOFTMAX | _IDENTITY:
        return None
    values = [np.float32(float(v)) for v in text.strip().strip("[]").split(",") if v.strip()]
    if len(values) == 1 and groups > 1:
        values *= groups
    if len(values) != groups:
        return None
    if objective in _SIGMOID:
        if not all(0.0 < v < 1.0 for v in values):
            return None
        return [np.float32(-np.log(np.float32(1.0) / v - np.float32(1.0))) for v in values]
    return values


class _NodeTable:
    def __init__(self, width: int):
        self.width = width
        self.left: list[int] = []
        self.column: list[int] = []
        self.threshold: list[float] = []
        self.value: list[float] = []
        self.depth = 0

    def add_leaf(self, value: float) -> int:
        at = len(self.left)
        self.left.append(at)
        self.column.append(0)
        self.threshold.append(math.nan)
        self.value.append(value)
        return at

    def add_tree(self, tree: Mapping[str, Any], dart: tuple[float, np.float32] | None) -> int | None:
        """Appends one tree breadth first (children side by side); None if it is not a plain tree of
        numerical splits with scalar leaves."""
        try:
            lefts: Sequence[int] = tree["left_children"]
            rights: Sequence[int] = tree["right_children"]
            features: Sequence[int] = tree["split_indices"]
            conditions: Sequence[float] = tree["split_conditions"]
            default_left: Sequence[int] = tree["default_left"]
            split_types: Sequence[int] = tree.get("split_type") or [0] * len(lefts)
            if int(tree.get("tree_param", {}).get("size_leaf_vector", "1")) > 1:
                return None
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        count = len(lefts)
        if count == 0 or any(len(a) != count for a in (rights, features, conditions, default_left, split_types)):
            return None
        def leaf(value: float) -> float:
            if dart is None:
                return float(np.float32(value))
            weight, base = dart
            return float((np.float32(base + np.float32(value)) - base) * np.float32(weight))

        start = len(self.left)
        queue: list[tuple[int, int]] = [(0, 0)]  # (xgboost node id, depth)
        ids = {0: start}
        next_id = start + 1
        slots: dict[int, tuple[int, int, float, float]] = {}
        head = 0
        while head < len(queue):
            node, depth = queue[head]
            head += 1
            if len(queue) > count:
                return None  # a cycle: not a tree
            left, right = int(lefts[node]), int(rights[node])
            if left == -1:
                slots[ids[node]] = (ids[node], 0, math.nan, leaf(conditions[node]))
                self.depth = max(self.depth, depth)
                continue
            if int(split_types[node]) != 0 or not (0 <= left < count and 0 <= right < count):
                return None
            feature = int(features[node])
            if not 0 <= feature < self.width:
                return None
            ids[left], ids[right] = next_id, next_id + 1
            next_id += 2
            slots[ids[node]] = (ids[left], feature + (0 if int(default_left[node]) else self.width),
                                float(np.float32(conditions[node])), 0.0)
            queue.extend([(left, depth + 1), (right, depth + 1)])
        for at in range(start, next_id):
            left_id, column, threshold, value = slots[at]
            self.left.append(left_id)
            self.column.append(column)
            self.threshold.append(threshold)
            self.value.append(value)
        return start
