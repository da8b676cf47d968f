"""Pipeline specs live in the bucket (`specs/<name>.yaml`): every service reads the same ones.

`mlops pipeline apply FILE` writes them; services read them per event, through a short cache, so a
changed spec applies to the next event without a redeploy.
"""

from __future__ import annotations

import threading
import time

from mlops.core.layout import SPEC_PREFIX, spec_path
from mlops.core.spec import PipelineSpec, parse_spec
from mlops.ports.blobs import BlobNotFound, BlobStore


class UnknownPipeline(KeyError):
    pass


class SpecStore:
    def __init__(self, blobs: BlobStore, cache_seconds: float = 2.0):
        self._blobs = blobs
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, PipelineSpec]] = {}
        self._lock = threading.Lock()

    def put(self, spec: PipelineSpec) -> str:
        uri = self._blobs.put(spec_path(spec.name), spec.to_yaml().encode(), "application/yaml")
        with self._lock:
            self._cache.pop(spec.name, None)
        return uri

    def get(self, name: str, fresh: bool = False) -> PipelineSpec:
        """The spec as applied; `fresh` reads the bucket even within the cache's time (a reader that
        must see a spec applied a moment ago: the data-watcher, right after `mlops pipeline apply`)."""
        with self._lock:
            cached = self._cache.get(name)
        if cached and not fresh and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        path = spec_path(name)
        try:
            spec = parse_spec(self._blobs.get(path).decode("utf-8"), path)
        except BlobNotFound:
            raise UnknownPipeline(f"no pipeline {name!r}: apply its spec with `mlops pipeline apply`") from None
        with self._lock:
            self._cache[name] = (time.monotonic(), spec)
        return spec

    def names(self) -> list[str]:
        return [p[len(SPEC_PREFIX):-len(".yaml")] for p in self._blobs.list(SPEC_PREFIX) if p.endswith(".yaml")]
