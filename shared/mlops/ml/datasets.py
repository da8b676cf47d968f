"""The demo dataset: real data read from files that an installed package ships, never downloaded.

Default, `abalone`: the UCI Abalone data set.
    Nash, W. J., Sellers, T. L., Talbot, S. R., Cawthorn, A. J. & Ford, W. B. (1994). The Population Biology
    of Abalone (Haliotis species) in Tasmania. I. Blacklip Abalone (H. rubra) from the North Coast and
    Islands of Bass Strait. Sea Fisheries Division, Technical Report No. 48. Distributed by the UCI Machine
    Learning Repository (doi:10.24432/C55C7W, CC BY 4.0).
It is read from `sklego/data/abalone.zip` inside the scikit-lego wheel (pin: scikit-lego==0.9.10), found
through the installed distribution's file list, so neither scikit-lego nor pandas is imported.
4,177 abalones: sex (M / F / I for infant), seven physical measurements (UCI scaled them by 1/200), and
the number of shell rings. The binary label `rings_above_9` (1 when rings > 9, i.e. older than about
10.5 years, since age = rings + 1.5) splits the rows almost evenly (49.8% positive); `rings` stays in the
rows for a regression pipeline but must not be a feature of the classifier (it is the label's source).

Fallback, `breast_cancer`: the Wisconsin Diagnostic Breast Cancer data bundled with scikit-learn
(Street, Wolberg & Mangasarian, 1993; 569 rows, 30 numeric features, label `benign`), for machines
without scikit-lego.

Each row gets `_row_id` = "<dataset>-<line number>", the stable key the train/eval split hashes.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mlops.ml.split import ROW_KEY_COLUMN

ABALONE_DISTRIBUTION = "scikit-lego"
ABALONE_FILE = "sklego/data/abalone.zip"
ABALONE_MEASUREMENTS = ("length", "diameter", "height", "whole_weight", "shucked_weight", "viscera_weight",
                        "shell_weight")


class DemoDataset(NamedTuple):
    rows: list[dict[str, Any]]
    label_column: str
    feature_columns: list[str]
    description: str


class DatasetUnavailableError(RuntimeError):
    pass


def load_demo_dataset(name: str = "abalone") -> DemoDataset:
    """(rows, label_column, feature_columns, description) of a bundled real dataset, rows in file order."""
    loaders: dict[str, Callable[[], DemoDataset]] = {"abalone": _abalone, "breast_cancer": _breast_cancer}
    if name not in loaders:
        raise ValueError(f"unknown demo dataset {name!r}; choose one of {sorted(loaders)}")
    return loaders[name]()


def _abalone() -> DemoDataset:
    with zipfile.ZipFile(io.BytesIO(_packaged_file(ABALONE_DISTRIBUTION, ABALONE_FILE))) as archive:
        (member,) = archive.namelist()
        text = archive.read(member).decode("utf-8")
    rows: list[dict[str, Any]] = []
    for line_number, record in enumerate(csv.DictReader(io.StringIO(text)), start=1):
        rings = int(record["rings"])
        row: dict[str, Any] = {ROW_KEY_COLUMN: f"abalone-{line_number:05d}", "sex": record["sex"]}
        row.update({column: float(record[column]) for column in ABALONE_MEASUREMENTS})
        row["rings"] = rings
        row["rings_above_9"] = int(rings > 9)
        rows.append(row)
    description = (
        "UCI Abalone (Nash et al. 1994, Sea Fisheries Division Tech. Report 48; UCI ML Repository, CC BY 4.0), "
        f"as shipped in the {ABALONE_DISTRIBUTION} wheel. {len(rows)} abalones; label rings_above_9 = rings > 9 "
        "(older than ~10.5 years); features: sex (M/F/I) and seven shell/weight measurements.")
    return DemoDataset(rows, "rings_above_9", ["sex", *ABALONE_MEASUREMENTS], description)


def _breast_cancer() -> DemoDataset:
    from sklearn.datasets import (
        load_breast_cancer,  # bundled on disk with scikit-learn, no download
    )

    bunch = load_breast_cancer()
    names = [str(name).replace(" ", "_") for name in bunch.feature_names]
    rows = []
    for index, (values, target) in enumerate(zip(bunch.data.tolist(), bunch.target.tolist()), start=1):
        row: dict[str, Any] = {ROW_KEY_COLUMN: f"breast_cancer-{index:05d}"}
        row.update(zip(names, values))
        row["benign"] = int(target)  # sklearn's target: 0 malignant, 1 benign
        rows.append(row)
    description = ("Wisconsin Diagnostic Breast Cancer (Street, Wolberg & Mangasarian 1993), bundled with "
                   f"scikit-learn. {len(rows)} tumours, 30 numeric features, label benign.")
    return DemoDataset(rows, "benign", names, description)


def _packaged_file(distribution: str, path: str) -> bytes:
    try:
        located = importlib.metadata.distribution(distribution).locate_file(path)
    except importlib.metadata.PackageNotFoundError:
        raise DatasetUnavailableError(
            f"the demo dataset ships inside the {distribution!r} package, which is not installed "
            f"(pip install {distribution}; it is read as a file, never imported)") from None
    try:
        return Path(str(located)).read_bytes()
    except OSError as error:
        raise DatasetUnavailableError(f"{distribution} is installed but {path} is missing: {error}") from None
