"""One typed, frozen settings object per process.

ML knobs live in ``params.yaml`` (so DVC can track them); infrastructure comes from ``IRISFLOW_*``
environment variables, so the same params file runs on a laptop and in a cluster. Every entry
point calls :func:`load_settings` once and passes the result down; nothing deeper reads the
environment.

Over 300 lines on purpose: every knob lives here, in one typed tree, so one file answers "what
can be configured, and what are its limits".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from irisflow.errors import ConfigError

__all__ = [
    "ENV_OVERRIDES",
    "ArtifactSettings",
    "DataSettings",
    "DriftSettings",
    "FeatureSettings",
    "GatewaySettings",
    "KafkaSecurity",
    "KafkaSettings",
    "PrometheusSettings",
    "RetrainingSettings",
    "ScoringSettings",
    "Settings",
    "StreamsSettings",
    "TopicNames",
    "TrackingSettings",
    "TrainingSettings",
    "WorkerSettings",
    "default_min_insync",
    "load_settings",
]

DEFAULT_PARAMS = Path("params.yaml")

#: Environment variables with a fixed meaning: name -> dotted path in the settings tree.
ENV_OVERRIDES: dict[str, str] = {
    "IRISFLOW_HOME": "home",
    "IRISFLOW_CACHE_DIR": "cache_dir",
    "IRISFLOW_LOG_LEVEL": "log_level",
    "IRISFLOW_MODEL_NAME": "model_name",
    "IRISFLOW_KAFKA_BOOTSTRAP": "kafka.bootstrap",
    "IRISFLOW_KAFKA_APP_ID": "kafka.app_id",
    "IRISFLOW_KAFKA_PORT": "kafka.embedded_port",
    "IRISFLOW_KAFKA_CONTROLLER_PORT": "kafka.embedded_controller_port",
    "IRISFLOW_KAFKA_HEAP": "kafka.embedded_heap",
    "IRISFLOW_KAFKA_BROKERS": "kafka.embedded_brokers",
    "IRISFLOW_KAFKA_SECURITY_PROTOCOL": "kafka.security.protocol",
    "IRISFLOW_KAFKA_SASL_MECHANISM": "kafka.security.sasl_mechanism",
    "IRISFLOW_KAFKA_SASL_USERNAME": "kafka.security.sasl_username",
    "IRISFLOW_KAFKA_SASL_PASSWORD": "kafka.security.sasl_password",
    "IRISFLOW_KAFKA_SSL_CAFILE": "kafka.security.ssl_cafile",
    "IRISFLOW_KAFKA_SSL_CERTFILE": "kafka.security.ssl_certfile",
    "IRISFLOW_KAFKA_SSL_KEYFILE": "kafka.security.ssl_keyfile",
    "IRISFLOW_GATEWAY_HOST": "gateway.host",
    "IRISFLOW_GATEWAY_PORT": "gateway.port",
    "IRISFLOW_API_KEY": "gateway.api_key",
    "IRISFLOW_AUDIT_URL": "gateway.audit_url",
    "IRISFLOW_WORKER_HOST": "worker.host",
    "IRISFLOW_WORKER_PORT": "worker.port",
    "IRISFLOW_TRAINER_HOST": "retraining.host",
    "IRISFLOW_TRAINER_PORT": "retraining.port",
    "IRISFLOW_MLFLOW_URI": "tracking.uri",
    "IRISFLOW_PROMETHEUS_PORT": "prometheus.port",
    "IRISFLOW_OTLP_ENDPOINT": "tracing.otlp_endpoint",
}
#: ``IRISFLOW__SECTION__KEY=value`` overrides any param (value parsed as YAML).
GENERIC_PREFIX = "IRISFLOW__"

_FROZEN = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class DataSettings(BaseModel):
    model_config = _FROZEN

    source: str = "iris"
    label_column: str = "species"
    feature_columns: tuple[str, ...] = ()


def _all_candidates() -> dict[str, dict[str, Any]]:
    names = ("logistic_regression", "random_forest", "svm", "knn", "naive_bayes")
    return {name: {} for name in names}


class TrainingSettings(BaseModel):
    model_config = _FROZEN

    random_state: int = 42
    cv_folds: int = Field(default=5, ge=2)
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    selection_metric: str = "f1_macro"
    candidates: dict[str, dict[str, Any]] = Field(default_factory=_all_candidates)


class ScoringSettings(BaseModel):
    model_config = _FROZEN

    batch_size: int = Field(default=500, ge=1)
    batch_linger_seconds: float = Field(default=0.005, gt=0.0)
    """How long a Faust agent's partial batch waits for more (the lane never waits: see below)."""
    consumer: Literal["lane", "agent"] = "lane"
    """Who reads requests. ``lane``: one aiokafka consumer hands whole fetches to the scorer
    (streams/lane.py; several times Faust's per-message throughput). ``agent``: a Faust agent
    with ``stream.take_events``, the textbook path, kept for comparison and as a fallback."""
    commit_interval_seconds: float = Field(default=1.0, gt=0.0)
    """How often the lane commits answered request offsets; bounds the re-answers after a crash."""


class TopicNames(BaseModel):
    model_config = _FROZEN

    requests: str = "irisflow.requests"
    predictions: str = "irisflow.predictions"
    feedback: str = "irisflow.feedback"
    labeled: str = "irisflow.labeled"
    model_updates: str = "irisflow.model-updates"
    drift_events: str = "irisflow.drift-events"
    retrain_requests: str = "irisflow.retrain-requests"
    dead_letters: str = "irisflow.dead-letters"
    rollouts: str = "irisflow.rollouts"
    rollout_commands: str = "irisflow.rollout-commands"
    shadow_predictions: str = "irisflow.shadow-predictions"


class KafkaSecurity(BaseModel):
    """How irisflow's clients authenticate to an existing cluster (passed to every aiokafka
    client and to Faust). The embedded brokers listen in plain text on 127.0.0.1 only."""

    model_config = _FROZEN

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    """CA bundle to verify the brokers with (default: the system's)."""
    ssl_certfile: Path | None = None
    """Client certificate, for clusters that authenticate clients by TLS."""
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"kafka.security.protocol {self.protocol} needs a user name and a password: set "
                "IRISFLOW_KAFKA_SASL_USERNAME and IRISFLOW_KAFKA_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "a client certificate needs its key and the other way round: set both "
                "IRISFLOW_KAFKA_SSL_CERTFILE and IRISFLOW_KAFKA_SSL_KEYFILE"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL")


def default_min_insync(replicas: int) -> int:
    """The ``min.insync.replicas`` that goes with a replication factor: 2 from 3 replicas on
    (an acknowledged write is on two brokers, and one broker may be down), else 1."""
    return 2 if replicas >= 3 else 1


class KafkaSettings(BaseModel):
    model_config = _FROZEN

    bootstrap: str | None = None
    """An existing cluster; ``None`` means the embedded broker on 127.0.0.1."""
    app_id: str = "irisflow"
    """Prefix of consumer group ids (the Faust app id is ``<app_id>-streams``)."""
    embedded_port: int = 9092
    embedded_controller_port: int = 9093
    embedded_heap: str = "512m"
    """Heap of each embedded broker's JVM."""
    embedded_brokers: int = Field(default=1, ge=1, le=9)
    """Nodes of the embedded cluster (each a broker and a controller); 3 for a replicated one.
    Node *i* listens on ``embedded_port + 2(i-1)`` (controller ``embedded_controller_port +
    2(i-1)``)."""
    partitions: int = Field(default=4, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    """Replicas of every topic; ``None``: as many as the cluster has brokers, at most 3.
    Checked against the cluster's size before any topic is created."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """Replicas an ``acks=all`` write must reach; ``None``: 2 with 3 or more replicas, else 1."""
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024 * 1024)
    topics: TopicNames = TopicNames()
    security: KafkaSecurity = KafkaSecurity()

    @model_validator(mode="after")
    def _replicas_fit(self) -> KafkaSettings:
        factor, least = self.replication_factor, self.min_insync_replicas
        if factor is not None and least is not None and least > factor:
            raise ValueError(
                f"kafka.min_insync_replicas ({least}) cannot exceed kafka.replication_factor "
                f"({factor}): no write could ever be acknowledged"
            )
        if self.embedded and factor is not None and factor > self.embedded_brokers:
            raise ValueError(
                f"kafka.replication_factor is {factor} but the embedded cluster has "
                f"{self.embedded_brokers} broker(s): lower it, or set kafka.embedded_brokers "
                f"(IRISFLOW_KAFKA_BROKERS) to {factor} or more"
            )
        return self

    @property
    def embedded(self) -> bool:
        return self.bootstrap is None

    @property
    def embedded_bootstrap(self) -> list[str]:
        """``host:port`` of every embedded broker, in node order."""
        return [f"127.0.0.1:{self.embedded_port + 2 * i}" for i in range(self.embedded_brokers)]

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap or ",".join(self.embedded_bootstrap)


class GatewaySettings(BaseModel):
    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = 8000
    predict_timeout_seconds: float = Field(default=5.0, gt=0.0)
    max_batch_instances: int = Field(default=1000, ge=1)
    api_key: SecretStr | None = None
    audit_url: str | None = None
    """SQLAlchemy URL of the audit store; ``None`` means ``sqlite:///<home>/audit.db``."""
    answer_cache_size: int = Field(default=10000, ge=0)
    """Answered request ids a gateway remembers, so a repeated request_id is not scored again."""
    answer_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Bytes those remembered answers may take (a 1,000-instance answer is ~650 KB)."""
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    """Largest HTTP request body; larger ones get 413 before any parsing."""
    hedge_after_seconds: float = Field(default=0.25, ge=0.0)
    """A request unanswered this long is also sent to another partition (0: never)."""
    hedge_max_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of requests that may be hedged while every partition answers."""
    keep_alive_seconds: int = Field(default=75, ge=1)
    """How long an idle client connection stays open. Longer than the idle timeouts of common
    clients and proxies (Go's and nginx's 60-90 s pools): a server that closes a pooled
    connection first races the client's next request on it, which then fails without an answer
    (uvicorn's default of 5 s did so under load)."""
    command_wait_seconds: float = Field(default=10.0, ge=0.0)
    """How long ``POST /v1/rollout*`` waits for the rollout controller (in the trainer) to apply
    its command before answering 202 (the command stays on Kafka for when the trainer runs)."""


class RetrainingSettings(BaseModel):
    """The online retraining service (``irisflow trainer``)."""

    model_config = _FROZEN

    min_new_labels: int = Field(default=100, ge=1)
    """Retrain once this many labeled samples arrived since the last retraining."""
    window_size: int = Field(default=2000, ge=10)
    """Recent labeled samples kept: training extras plus the gate's holdout."""
    holdout_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    """Share of the recent window held out from training to compare challenger and champion."""
    tolerance: float = Field(default=0.02, ge=0.0)
    """A challenger may score this much lower (macro-F1) than the champion and still win."""
    drift_cooldown_seconds: float = Field(default=300.0, ge=0.0)
    """After a drift-triggered retraining, further drift alarms wait this long."""
    host: str = "127.0.0.1"
    port: int = 6070
    """Prometheus metrics of the trainer service."""


class RolloutSettings(BaseModel):
    """Safe rollouts: how a challenger meets traffic and when the policy moves it on.

    The policy judges a stage only on requests both versions scored (``min_samples`` of them,
    for at least ``min_stage_seconds``). Labels decide once ``min_labels`` paired requests have
    them; before that the label-free estimate (expected accuracy from calibrated confidences)
    stands in. Rolled back when the candidate's error rate, agreement, class mix, accuracy or
    estimate crosses a rollback threshold, when a canary has served ``canary_budget`` answers
    without a verdict, or when the rollout outlives ``max_duration_seconds``.
    """

    model_config = _FROZEN

    challenger_entry: Literal["direct", "shadow", "canary"] = "direct"
    """How the trainer's winning challenger goes live: ``direct`` (the gate alone, at once),
    or through a rollout starting in ``shadow`` or ``canary``."""
    shadow_share: float = Field(default=1.0, gt=0.0, le=1.0)
    """Share of requests the candidate also scores in shadow."""
    canary_share: float = Field(default=0.1, gt=0.0, le=1.0)
    """Share of requests (by request id) the candidate answers in canary."""
    min_samples: int = Field(default=200, ge=1)
    min_labels: int = Field(default=30, ge=1)
    min_stage_seconds: float = Field(default=10.0, ge=0.0)
    max_duration_seconds: float = Field(default=3600.0, gt=0.0)
    canary_budget: int = Field(default=1000, ge=1)
    """Most candidate answers clients may get in canary before the policy has a verdict."""
    min_agreement: float = Field(default=0.85, ge=0.0, le=1.0)
    """A stage is passed only with at least this agreement with the champion..."""
    rollback_agreement: float = Field(default=0.6, ge=0.0, le=1.0)
    """...and rolled back below this one."""
    tolerance: float = Field(default=0.02, ge=0.0)
    """Passed when the candidate's accuracy (or estimate) is at least the champion's minus this."""
    rollback_margin: float = Field(default=0.05, ge=0.0)
    """Rolled back when the candidate's accuracy (or estimate) is this far below the champion's."""
    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    max_class_psi: float = Field(default=0.5, gt=0.0)
    evaluate_interval_seconds: float = Field(default=2.0, gt=0.0)
    """How often the controller judges and publishes the readings."""

    @model_validator(mode="after")
    def _ordered(self) -> RolloutSettings:
        if self.rollback_agreement > self.min_agreement:
            raise ValueError("rollout.rollback_agreement must not exceed rollout.min_agreement")
        return self


class TrackingSettings(BaseModel):
    """Optional MLflow tracking of every training run (``pip install 'irisflow[mlflow]'``)."""

    model_config = _FROZEN

    mlflow: bool = False
    uri: str = "sqlite:///.irisflow/mlflow.db"
    experiment: str = "irisflow"


class TracingSettings(BaseModel):
    """OpenTelemetry export of every hop's span (``pip install 'irisflow[otel]'``).

    Trace context and hop stamps ride in Kafka headers whether or not this is set; spans are
    exported only when an OTLP/HTTP endpoint is (e.g. ``http://localhost:4318``).
    """

    model_config = _FROZEN

    otlp_endpoint: str | None = None


class WorkerSettings(BaseModel):
    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = 6066


class FeatureSettings(BaseModel):
    """What feature values the gateway, the workers and the trainer accept."""

    model_config = _FROZEN

    max_reference_std: float | None = Field(default=100.0, gt=0.0)
    """Refuse (HTTP 422, dead letter ``out_of_domain``) values farther than this many training
    standard deviations from the training mean: a model's answer there is extrapolation, and
    such a value in a labeled sample can break retraining. Values beyond float32 are always
    refused (tree models compute in float32). ``null`` keeps only the float32 check."""


class ArtifactSettings(BaseModel):
    """Limits a model artifact must meet before a worker, gateway or trainer loads it."""

    model_config = _FROZEN

    max_uncompressed_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Sum of the sizes inside the skops zip, checked before anything is read: a 500 KB zip can
    unpack to gigabytes."""
    max_entries: int = Field(default=10000, ge=10)
    """Files inside the skops zip."""


class PrometheusSettings(BaseModel):
    """The local Prometheus ``irisflow up`` runs when the ``prometheus`` binary is installed."""

    model_config = _FROZEN

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9090
    scrape_interval_seconds: float = Field(default=5.0, gt=0.0)


class StreamsSettings(BaseModel):
    """The scoring workers' feedback join, live accuracy and group membership."""

    model_config = _FROZEN

    join_window_seconds: float = Field(default=600.0, gt=0.0)
    """How long a prediction waits for its feedback (and feedback for its prediction)."""
    sweep_interval_seconds: float = Field(default=5.0, gt=0.0)
    """How often expired join entries are removed and unmatched feedback is dead-lettered."""
    accuracy_window: int = Field(default=500, ge=10)
    """Labeled samples per model version behind the live accuracy and macro-F1 gauges."""
    session_timeout_seconds: float = Field(default=6.0, ge=6.0)
    """How soon the group notices a dead worker (even ``kill -9``) and moves its partitions."""
    lag_interval_seconds: float = Field(default=5.0, gt=0.0)
    """How often the consumer-lag gauge is refreshed."""


class DriftSettings(BaseModel):
    """Drift detection on every worker, against the live model's reference statistics."""

    model_config = _FROZEN

    enabled: bool = True
    adwin_delta: float = Field(default=0.002, gt=0.0, lt=1.0)
    """ADWIN's confidence: smaller means fewer false alarms and slower detection."""
    window: int = Field(default=500, ge=50)
    """Recent values behind the windowed statistics (KS per feature, PSI of predictions)."""
    ks_threshold: float = Field(default=0.15, gt=0.0, lt=1.0)
    """Alarm when the live CDF is this far from the reference deciles."""
    prediction_psi_threshold: float = Field(default=0.2, gt=0.0)
    """Alarm when predicted-class frequencies drift this far (PSI) from the training prior."""
    cooldown_seconds: float = Field(default=300.0, ge=0.0)
    """After an alarm, the same feature and detector stay quiet this long (per worker)."""
    max_rows_per_batch: int = Field(default=250, ge=1)
    """Rows of a scored micro-batch fed to the detectors (evenly spaced): bounds their cost."""
    estimate_window: int = Field(default=500, ge=10)
    """Rows behind the label-free accuracy estimate of the live version."""
    estimated_accuracy_drop: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Alarm (label-free performance drift) when the estimated accuracy falls this far below
    the version's cross-validated accuracy."""


class Settings(BaseModel):
    """Everything a process needs to know, validated once at its entry point."""

    model_config = _FROZEN

    params_path: Path = DEFAULT_PARAMS
    home: Path = Path(".irisflow")
    cache_dir: Path = Path.home() / ".cache" / "irisflow"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    model_name: str = "iris"
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    scoring: ScoringSettings = ScoringSettings()
    kafka: KafkaSettings = KafkaSettings()
    gateway: GatewaySettings = GatewaySettings()
    worker: WorkerSettings = WorkerSettings()
    retraining: RetrainingSettings = RetrainingSettings()
    rollout: RolloutSettings = RolloutSettings()
    tracking: TrackingSettings = TrackingSettings()
    tracing: TracingSettings = TracingSettings()
    streams: StreamsSettings = StreamsSettings()
    drift: DriftSettings = DriftSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    features: FeatureSettings = FeatureSettings()
    artifacts: ArtifactSettings = ArtifactSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry" / self.model_name


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def _read_params(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"params file {path} not found: run from the project folder, or pass "
            "--params PATH / set IRISFLOW_PARAMS"
        ) from exc
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"params file {path} must be a mapping at the top level")
    return loaded


def _describe(error: ValidationError, source: Path) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}")
    return f"invalid settings (from {source} and IRISFLOW_* variables): " + "; ".join(parts)


def load_settings(
    params_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read params.yaml, apply environment overrides, then explicit overrides (dotted keys)."""
    env = os.environ if environ is None else environ
    path = Path(params_path or env.get("IRISFLOW_PARAMS") or DEFAULT_PARAMS)
    tree = _read_params(path)
    tree["params_path"] = str(path)
    for name, dotted in ENV_OVERRIDES.items():
        if env.get(name):
            _set_path(tree, dotted, env[name])
    for name, raw in env.items():
        if name.startswith(GENERIC_PREFIX) and len(name) > len(GENERIC_PREFIX):
            dotted = name[len(GENERIC_PREFIX) :].lower().replace("__", ".")
            _set_path(tree, dotted, yaml.safe_load(raw))
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted, value)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
