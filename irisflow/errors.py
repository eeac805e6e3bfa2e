"""One root error for irisflow, with one small subclass per thing that can go wrong.

Each subclass carries a message that tells the user what to do; the CLI prints it as one line
instead of a traceback, and the gateway maps subclasses to HTTP statuses in one table.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "IrisflowError",
    "KafkaRuntimeError",
    "KafkaUnavailable",
    "ModelNotFound",
    "PredictionFailed",
    "PredictionTimeout",
    "SchemaError",
]


class IrisflowError(Exception):
    """Root of every error irisflow raises on purpose."""


class ConfigError(IrisflowError):
    """params.yaml or an IRISFLOW_* variable is missing or invalid."""


class DataError(IrisflowError):
    """The training data cannot be used (missing file or column, NaN, one class...)."""


class KafkaRuntimeError(IrisflowError):
    """The embedded broker could not be installed, started or stopped."""


class KafkaUnavailable(IrisflowError):
    """No Kafka broker answered at the configured bootstrap servers."""


class SchemaError(IrisflowError):
    """A message does not match its wire schema or the live model's feature schema."""


class ArtifactError(IrisflowError):
    """A model artifact failed its checksum or contains types outside the allow-list."""


class ModelNotFound(IrisflowError):
    """The requested model version does not exist in the registry."""


class PredictionTimeout(IrisflowError):
    """No worker answered a prediction request in time (workers down or overloaded)."""


class PredictionFailed(IrisflowError):
    """A worker answered, but with an error (no model live, features that do not fit it)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
