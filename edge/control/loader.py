"""Bundle loader that finds an adapter-only update's parent in the model cache.

The serving loader (``edge.serving.bundle_loader.BundleModelLoader``) opens an update against
the bundle currently served. A node told to run an update of a version it does not serve (or
restarting from a last-known-good update) needs the parent the manifest names instead: this
wrapper looks it up in the :class:`ModelCache` by manifest sha256 and falls back to the served
bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from contracts.manifest import MANIFEST_FILE, Manifest
from edge.control.cache import ModelCache
from edge.serving.bundle_loader import BundleModelLoader
from edge.serving.loaded_model import LoadedModel
from edge.settings import ServeSettings


class CachedParentLoader:
    def __init__(self, settings: ServeSettings, cache: ModelCache, served: Callable[[], Path | None]) -> None:
        self.settings = settings
        self.cache = cache
        self.served = served

    def parent_for(self, source: Path) -> Path | None:
        path = Path(source) / MANIFEST_FILE
        if path.is_file():
            man = Manifest.from_yaml(path.read_bytes(), str(path))
            if man.kind == "adapter_update" and man.parent is not None:
                found = self.cache.find(man.parent.manifest_sha256)
                if found is not None:
                    return found
        return self.served()

    def __call__(self, source: Path, adapter_set: str | None = None) -> LoadedModel:
        parent = self.parent_for(Path(source))
        return BundleModelLoader(self.settings, parent_of=lambda: parent)(Path(source), adapter_set)
