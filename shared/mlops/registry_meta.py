"""What the loop keeps on each registry version besides labels: a JSON description.

Registry labels are short and restricted (lowercase, <= 63 chars), so the artifact's exact URI and
checksum, the metrics and the lineage travel in the version's description as JSON, written by the
registrar and read by the deployer, the CLI and `mlops lineage`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

@dataclass(frozen=True)
class VersionMeta:
    artifact_uri: str
    artifact_checksum: str
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    decision: str = ""
    reason: str = ""
    lineage: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, version: Any) -> VersionMeta:
        """Read it back from a registry version's description."""
        try:
            data = json.loads(getattr(version, "description", "") or "{}")
        except json.JSONDecodeError:
            data = {}
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("artifact_uri", version.artifact_uri.rstrip("/") + "/model.zip")
        known.setdefault("artifact_checksum", "")
        return cls(**known)
