"""Model artifacts and the local registry of immutable versions.

Artifacts are skops files, never pickles: loading one only instantiates types that skops trusts
by default (scikit-learn's estimators, numpy) plus the short allow-list below, so bytes that
arrive over Kafka cannot run code. The sha256 published with a version is checked before the
bytes are even parsed.

The registry folder is the trainer's durable record (and what rollback republishes from); the
compacted ``model-updates`` topic is what every worker reads, so no worker needs this folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import skops.io as sio

from irisflow.errors import ArtifactError, ModelNotFound
from irisflow.schemas import ModelMetadata, ModelUpdate

__all__ = [
    "TRUSTED_TYPES",
    "LocalRegistry",
    "deserialize_model",
    "serialize_model",
    "sha256_hex",
]

log = logging.getLogger(__name__)

#: Types outside skops' default trust that our five candidate pipelines contain.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize_model(model: Any) -> bytes:
    """skops bytes, deflated: a 100-tree forest shrinks from ~2.4 MB to under 200 KB."""
    return bytes(sio.dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=6))


def deserialize_model(artifact: bytes, *, sha256: str) -> Any:
    """Load a model only if its checksum matches and every type it names is trusted."""
    actual = sha256_hex(artifact)
    if actual != sha256:
        raise ArtifactError(
            f"artifact checksum mismatch: expected {sha256[:12]}…, got {actual[:12]}…"
        )
    try:
        untrusted = sio.get_untrusted_types(data=artifact)
    except Exception as exc:  # skops raises several types for corrupt archives
        raise ArtifactError(f"artifact is not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ArtifactError(f"artifact contains types outside the allow-list: {', '.join(refused)}")
    try:
        return sio.loads(artifact, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactError(f"artifact could not be loaded: {exc}") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalRegistry:
    """``<root>/v0001/{model.skops, metadata.json}``: one folder per immutable version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, version: int) -> Path:
        return self.root / f"v{version:04d}"

    def versions(self) -> list[int]:
        if not self.root.exists():
            return []
        found = []
        for child in self.root.iterdir():
            if child.name.startswith("v") and (child / "metadata.json").exists():
                try:
                    found.append(int(child.name[1:]))
                except ValueError:
                    continue
        return sorted(found)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def metadata(self, version: int) -> ModelMetadata:
        path = self._dir(version) / "metadata.json"
        if not path.exists():
            raise ModelNotFound(f"model version {version} is not in the registry at {self.root}")
        return ModelMetadata.model_validate_json(path.read_bytes())

    def get(self, version: int) -> ModelUpdate:
        """The full update (metadata + verified artifact bytes), ready to republish."""
        meta = self.metadata(version)
        artifact = (self._dir(version) / "model.skops").read_bytes()
        if sha256_hex(artifact) != meta.sha256:
            raise ArtifactError(f"registry artifact of version {version} fails its checksum")
        return ModelUpdate(**meta.model_dump(), artifact=artifact)

    def save(self, update: ModelUpdate, *, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write a new version; refuses to overwrite one (versions are immutable)."""
        target = self._dir(update.version)
        if (target / "metadata.json").exists():
            existing = self.metadata(update.version)
            if existing.sha256 == update.sha256:
                return target
            raise ArtifactError(
                f"model version {update.version} already exists with different bytes; "
                "versions are immutable"
            )
        target.mkdir(parents=True, exist_ok=True)
        _atomic_write(target / "model.skops", update.artifact)
        for name, data in (extra_files or {}).items():
            _atomic_write(target / name, data)
        # metadata.json last: its presence marks the version complete.
        meta = update.metadata().model_dump(mode="json")
        _atomic_write(target / "metadata.json", json.dumps(meta, indent=2).encode())
        log.info("registry: saved %s version %d in %s", update.model_name, update.version, target)
        return target
