"""Model artifacts and the local registry of immutable versions.

Artifacts are skops files, never pickles: loading one only instantiates types that skops trusts
by default (scikit-learn's estimators, numpy) plus the short allow-list below, so bytes that
arrive over Kafka cannot run code. The sha256 published with a version is checked before the
bytes are even parsed.

The registry folder is the trainer's durable record (and what rollback republishes from); the
compacted ``model-updates`` topic is what every worker reads, so no worker needs this folder.

Just over 300 lines: the checks an artifact passes and the folder that keeps it belong
together (the registry re-checks what it serves and republishes).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka.errors import KafkaError

from irisflow.errors import ArtifactError, KafkaUnavailable, ModelNotFound
from irisflow.kafka.model_topic import publish_update
from irisflow.schemas import ModelMetadata, ModelUpdate
from irisflow.settings import ArtifactSettings, KafkaSettings

__all__ = [
    "TRUSTED_TYPES",
    "LocalRegistry",
    "check_contract",
    "deserialize_model",
    "load_update",
    "republish",
    "serialize_model",
    "sha256_hex",
    "verify_checksum",
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


def verify_checksum(artifact: bytes, sha256: str) -> None:
    """The one checksum rule: the bytes are the ones their version was published with."""
    actual = sha256_hex(artifact)
    if actual != sha256:
        raise ArtifactError(
            f"artifact checksum mismatch: expected {sha256[:12]}…, got {actual[:12]}…"
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize_model(model: Any) -> bytes:
    """skops bytes, deflated: a 100-tree forest shrinks from ~2.4 MB to under 200 KB."""
    return bytes(_skops().dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=6))


def _check_archive(artifact: bytes, limits: ArtifactSettings) -> None:
    """Refuse a zip whose entries would unpack past the limits, before anything is unpacked.

    The sizes come from the zip's central directory; skops then reads through ``zipfile``,
    which stops at the declared size of each entry, so a lying header cannot get past this.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(artifact)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ArtifactError(f"artifact is not a readable skops (zip) file: {exc}") from exc
    if len(entries) > limits.max_entries:
        raise ArtifactError(
            f"artifact has {len(entries)} files inside; the limit is {limits.max_entries} "
            "(artifacts.max_entries)"
        )
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_uncompressed_bytes:
        raise ArtifactError(
            f"artifact unpacks to {total:,} bytes; the limit is "
            f"{limits.max_uncompressed_bytes:,} (artifacts.max_uncompressed_bytes)"
        )


def check_contract(estimator: Any, metadata: ModelMetadata) -> None:
    """Refuse an estimator that would crash or mislead the scorer, before it goes live.

    A worker calls ``predict_proba`` on rows in ``feature_names`` order and reads the columns as
    ``class_labels``; anything else (a regressor, a model fit on other features, other classes,
    NaN probabilities) would fail every batch or answer wrongly, so it is refused here.
    """
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ArtifactError(f"{type(estimator).__name__} has no predict_proba: not a classifier")
    expected = len(metadata.feature_names)
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features != expected:
        raise ArtifactError(
            f"the estimator takes {n_features} features; the metadata names {expected} "
            f"({', '.join(metadata.feature_names)})"
        )
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != list(metadata.feature_names):
        raise ArtifactError(
            f"the estimator was fit on features {list(map(str, names))}, the metadata says "
            f"{metadata.feature_names}"
        )
    classes = [str(c) for c in getattr(estimator, "classes_", [])]
    if classes != list(metadata.class_labels):
        raise ArtifactError(
            f"the estimator's classes {classes} are not the metadata's {metadata.class_labels}"
        )
    _smoke_test(estimator, metadata)


def _smoke_test(estimator: Any, metadata: ModelMetadata) -> None:
    """Score the training means (and the reference deciles' ends): finite probabilities, one
    column per class, rows summing to one."""
    rows = []
    for pick in ("mean", "low", "high"):
        row = []
        for name in metadata.feature_names:
            stats = metadata.reference_stats.get(name)
            if stats is None:
                row.append(0.0)
            elif pick == "mean" or not stats.quantiles:
                row.append(stats.mean)
            else:
                row.append(stats.quantiles[0] if pick == "low" else stats.quantiles[-1])
        rows.append(row)
    try:
        probabilities = np.asarray(estimator.predict_proba(np.array(rows, dtype=np.float64)))
    except Exception as exc:
        raise ArtifactError(f"the estimator failed a smoke prediction: {exc!r}") from exc
    shape = (len(rows), len(metadata.class_labels))
    if probabilities.shape != shape:
        raise ArtifactError(
            f"a smoke prediction returned shape {probabilities.shape}, expected {shape}"
        )
    if not np.isfinite(probabilities).all() or not np.allclose(probabilities.sum(axis=1), 1.0):
        raise ArtifactError(
            "a smoke prediction returned probabilities that are not finite or do not sum to one"
        )


def load_update(update: ModelUpdate, limits: ArtifactSettings) -> Any:
    """The estimator of ``update`` once it passed every check; :class:`ArtifactError` otherwise.

    Checksum, archive limits, type allow-list, load, contract: what every worker, gateway and
    trainer runs before trusting a version (call it off the event loop: it parses and scores).
    """
    estimator = deserialize_model(update.artifact, sha256=update.sha256, limits=limits)
    try:
        check_contract(estimator, update.metadata())
    except ArtifactError:
        raise
    except Exception as exc:  # a crafted estimator can make any attribute or call raise
        raise ArtifactError(f"the estimator failed its contract checks: {exc!r}") from exc
    return estimator


def deserialize_model(
    artifact: bytes, *, sha256: str, limits: ArtifactSettings | None = None
) -> Any:
    """Load a model only if its checksum matches, it fits the limits and every type is trusted."""
    verify_checksum(artifact, sha256)
    _check_archive(artifact, limits or ArtifactSettings())
    try:
        untrusted = _skops().get_untrusted_types(data=artifact)
    except Exception as exc:  # skops raises several types for corrupt archives
        raise ArtifactError(f"artifact is not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ArtifactError(f"artifact contains types outside the allow-list: {', '.join(refused)}")
    try:
        return _skops().loads(artifact, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactError(f"artifact could not be loaded: {exc}") from exc


def _skops() -> Any:
    """skops.io, imported on first use: it imports scikit-learn (~100 MB of memory), which a
    process that only reads the registry or checks versions elsewhere never needs."""
    import skops.io

    return skops.io


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
    """``<root>/v0001/{model.skops, metadata.json, card.md}``: one folder per immutable version,
    and ``<root>/decisions.jsonl``: one line per retraining decision (the audit trail)."""

    CARD = "card.md"
    """The model card's file name inside a version's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def version_dir(self, version: int) -> Path:
        return self.root / f"v{version:04d}"

    def card_path(self, version: int) -> Path:
        """Where the version's model card is (it may not exist: cards are optional)."""
        return self.version_dir(version) / self.CARD

    @property
    def decisions_path(self) -> Path:
        return self.root / "decisions.jsonl"

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
        path = self.version_dir(version) / "metadata.json"
        if not path.exists():
            raise ModelNotFound(f"model version {version} is not in the registry at {self.root}")
        return ModelMetadata.model_validate_json(path.read_bytes())

    def get(self, version: int) -> ModelUpdate:
        """The full update (metadata + verified artifact bytes), ready to republish."""
        meta = self.metadata(version)
        artifact = (self.version_dir(version) / "model.skops").read_bytes()
        verify_checksum(artifact, meta.sha256)
        return ModelUpdate(**meta.model_dump(), artifact=artifact)

    def save(self, update: ModelUpdate, *, extra_files: dict[str, bytes] | None = None) -> Path:
        """Write a new version; refuses to overwrite one (versions are immutable)."""
        target = self.version_dir(update.version)
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

    def append_decision(self, entry: Mapping[str, Any]) -> None:
        """Add one retraining decision (a JSON object) to the end of the decisions log."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.decisions_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def decisions(self) -> list[dict[str, Any]]:
        """Every recorded decision, oldest first (none before the first retraining)."""
        if not self.decisions_path.exists():
            return []
        lines = self.decisions_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def deployments(self, version: int) -> list[dict[str, Any]]:
        """``version``'s deployment history, oldest first: the retraining decision that published
        it (stage ``live``) and every rollout step it went through (``shadow``, ``canary``,
        ``promoted``, ``rolled_back``, ``aborted``), each with when, who and why."""
        history: list[dict[str, Any]] = []
        for entry in self.decisions():
            if entry.get("version") != version:
                continue
            if entry.get("kind") == "rollout":
                history.append(entry)
            elif entry.get("outcome") == "promoted":
                history.append(
                    {
                        "at": entry.get("at"),
                        "stage": "live",
                        "decided_by": "trainer",
                        "reason": entry.get("reason", "retraining gate"),
                        "trigger": entry.get("trigger"),
                    }
                )
        return history


async def republish(
    kafka: KafkaSettings,
    update: ModelUpdate,
    *,
    limits: ArtifactSettings,
    timeout: float = 30.0,
) -> None:
    """Make a version that was live before live again (a rollback), the one way to do it.

    The update first passes :func:`load_update`, as on every worker, so an artifact the workers
    would refuse (a registry file changed on disk, a refused Kafka record) is never republished;
    :class:`ArtifactError` then. A broker that does not acknowledge within ``timeout`` seconds is
    :class:`KafkaUnavailable`.
    """
    await asyncio.to_thread(load_update, update, limits)
    try:
        await asyncio.wait_for(publish_update(kafka, update), timeout=timeout)
    except (KafkaError, TimeoutError) as exc:
        raise KafkaUnavailable(
            f"could not republish {update.model_name} version {update.version} to "
            f"{kafka.topics.model_updates} at {kafka.bootstrap_servers}: {exc!r}"
        ) from exc
    log.info("republished %s version %d (rollback)", update.model_name, update.version)
