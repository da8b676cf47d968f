"""Settings -> the read-only REST adapters (`mlops.adapters.rest`) the operator's read commands use.

One HTTP session serves all three; none of the cloud client libraries is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.adapters.rest import BigQueryReader, GcsReader, VertexRegistryReader, rest_session
from mlops.core.settings import CommonSettings


@dataclass(frozen=True)
class Readers:
    warehouse: BigQueryReader
    registry: VertexRegistryReader
    blobs: GcsReader


def readers(settings: CommonSettings) -> Readers:
    """Emulator endpoints from the settings when they name them (the local stack: no credentials),
    Google's otherwise (application default credentials)."""
    local = settings.bigquery_emulator_host is not None
    session = rest_session(local)
    return Readers(
        warehouse=BigQueryReader(session, settings.project, settings.dataset, settings.snapshot_dataset,
                                 settings.bigquery_emulator_host),
        registry=VertexRegistryReader(session, settings.project, settings.location, settings.vertex_endpoint),
        blobs=GcsReader(session, settings.bucket, settings.storage_emulator_host),
    )
