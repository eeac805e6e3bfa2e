"""One typed object per topic: its name, its key, its codec, and how it refuses a record.

Every producer and consumer in every role goes through these objects, so a topic's wire
contract is written once. Decoding either returns a valid message or raises :class:`Refused`
with a :class:`Reason`; the consumer then dead-letters the record (:class:`DeadLetters`) with its
original bytes, where it came from, why, and who refused it, commits its offset and goes on.
No consumer raises on a bad record.

Keys are part of the contract: requests, predictions, feedback and labeled samples are keyed
by request id, which is what co-partitions a request with its feedback and its join entry; a
record whose key is not its value's id would land in the wrong partition, so it is refused.

Over 300 lines on purpose: the codec, the reasons it refuses with and the dead letters those
refusals become are one contract; split, a change to one would be easy to miss in the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError

from irisflow.errors import SchemaError
from irisflow.schemas import (
    BatchPrediction,
    BatchPredictionRequest,
    DeadLetter,
    DriftEvent,
    Feedback,
    LabeledSample,
    MatrixPrediction,
    MatrixPredictionRequest,
    ModelUpdate,
    Prediction,
    PredictionRequest,
    RetrainRequest,
    RolloutCommand,
    RolloutState,
    ShadowPrediction,
    WireMessage,
    clip,
    describe_validation_error,
)
from irisflow.settings import KafkaSettings, TopicNames
from irisflow.tracing import trace_of

__all__ = [
    "HEADER_PREFIX",
    "AnyAnswer",
    "AnyRequest",
    "DeadLetters",
    "Incoming",
    "Outgoing",
    "Reason",
    "Refused",
    "Topic",
    "Topics",
    "decode_answer",
    "decode_request",
    "letter_headers",
]

M = TypeVar("M", bound=WireMessage)

log = logging.getLogger(__name__)

HEADER_PREFIX = "irisflow-"
"""Dead letters repeat their origin and reason in headers, readable without decoding JSON."""


class Reason(StrEnum):
    """Why a record was dead-lettered: one word for filters, metrics and alerts."""

    UNDECODABLE = "undecodable"
    """No value (a tombstone), or a value that is not UTF-8 JSON."""
    TOO_LARGE = "too_large"
    """A value larger than its topic ever needs (feedback, alarms and commands are small);
    refused before parsing (its letter carries it, cut to fit the dead-letter topic)."""
    INVALID = "invalid"
    """JSON that breaks the topic's schema: a missing field, a wrong type, NaN or ±Infinity,
    a string or list over its limit, a request id outside its charset."""
    BAD_KEY = "bad_key"
    """No key, a key that is not UTF-8, or a key that is not the value's id or model name."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """Feature names that do not fit the live model (answered with HTTP 422 too), or a label
    that is none of its classes."""
    OUT_OF_DOMAIN = "out_of_domain"
    """Feature values the model cannot compute with: beyond float32, or farther from the
    training mean than ``features.max_reference_std`` standard deviations."""
    UNSCORABLE = "unscorable"
    """The model's output for a row was not finite."""
    UNMATCHED_FEEDBACK = "unmatched_feedback"
    """Feedback that found no prediction within ``streams.join_window_seconds``."""
    PROCESSING_FAILED = "processing_failed"
    """Processing the (valid) record raised; the error is in the letter, the consumer goes on."""
    TRAINING_FAILED = "training_failed"
    """A retraining that used these labeled samples failed; replay them once it is fixed."""
    REFUSED_MODEL = "refused_model"
    """A model update that failed its checksum, size limits, type allow-list or contract."""


class Refused(SchemaError):
    """A record this consumer cannot use, with the reason its dead letter will carry."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(clip(message))
        self.reason = reason


@dataclass(frozen=True)
class Incoming:
    """One record as it came off a topic, before any decoding."""

    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    offset: int | None = None
    topic: str = ""
    headers: tuple[tuple[str, bytes], ...] = ()
    """The record's headers: trace context and hop stamps (:mod:`irisflow.tracing`) ride here."""

    @classmethod
    def of(cls, record: Any) -> Incoming:
        """From a consumer record (aiokafka's, or Faust's message): the fields we keep."""
        return cls(
            record.value,
            record.key,
            record.partition,
            record.offset,
            record.topic,
            _header_pairs(getattr(record, "headers", None)),
        )


def _header_pairs(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Headers as (name, bytes) pairs, from aiokafka (pairs) or Faust (pairs or a mapping)."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple(
        (str(name), value if isinstance(value, bytes) else str(value or "").encode())
        for name, value in items
    )


@dataclass(frozen=True)
class Outgoing:
    """One record to produce. ``value=None`` is a tombstone (table changelogs)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def _json(raw: bytes | str | None, shape: str) -> Any:
    if raw is None:
        raise Refused(Reason.UNDECODABLE, f"{shape}: empty message (tombstone or null value)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(Reason.UNDECODABLE, f"{shape}: not a UTF-8 JSON document ({exc})") from exc


def _validate(shape: type[M], body: Any) -> M:
    try:
        return shape.model_validate(body)
    except ValidationError as exc:
        raise Refused(
            Reason.INVALID, f"{shape.__name__}: {describe_validation_error(exc)}"
        ) from exc


def _plain(shape: type[M]) -> Callable[[bytes | str | None], M]:
    def decode(raw: bytes | str | None) -> M:
        return _validate(shape, _json(raw, shape.__name__))

    return decode


AnyRequest = PredictionRequest | BatchPredictionRequest | MatrixPredictionRequest
"""What the requests topic carries: one instance, a batch of dicts, or a batch as a matrix."""
AnyAnswer = Prediction | BatchPrediction | MatrixPrediction
"""What the predictions topic carries: the answer to each of :data:`AnyRequest`'s shapes."""


def decode_request(raw: bytes | str | None) -> AnyRequest:
    """The requests topic carries three shapes: an object with ``rows`` is a matrix, one with
    ``instances`` a batch of dicts, anything else a single instance."""
    body = _json(raw, "PredictionRequest")
    if isinstance(body, dict) and "rows" in body:
        return _validate(MatrixPredictionRequest, body)
    if isinstance(body, dict) and "instances" in body:
        return _validate(BatchPredictionRequest, body)
    return _validate(PredictionRequest, body)


def decode_answer(raw: bytes | str | None) -> AnyAnswer:
    """The predictions topic carries three shapes: an object with ``labels`` answers a matrix,
    one with ``predictions`` a batch, anything else (errors too) a single instance.

    A value that names ``"labels"`` is first read straight into a MatrixPrediction by pydantic's
    core (no intermediate dict of a thousand lists); if it is not one, the general path below
    decides, with its exact refusal."""
    if isinstance(raw, bytes) and b'"labels"' in raw:
        with contextlib.suppress(ValidationError):
            matrix = MatrixPrediction.model_validate_json(raw)
            if matrix.labels:  # a result, so the object did have labels (not only a mention)
                return matrix
    body = _json(raw, "Prediction")
    if isinstance(body, dict) and "labels" in body:
        return _validate(MatrixPrediction, body)
    if isinstance(body, dict) and "predictions" in body:
        return _validate(BatchPrediction, body)
    return _validate(Prediction, body)


class Topic(Generic[M]):
    """A topic's name, how its values are decoded, and which key each value must carry."""

    def __init__(
        self,
        name: str,
        decode: Callable[[bytes | str | None], M],
        key_of: Callable[[M], str] | None,
        *,
        max_bytes: int | None = None,
    ) -> None:
        self.name = name
        self._decode = decode
        self._key_of = key_of
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"Topic({self.name!r})"

    def key(self, message: M) -> bytes | None:
        return self._key_of(message).encode() if self._key_of is not None else None

    def encode(self, message: M) -> bytes:
        return message.to_bytes()

    def record(
        self,
        message: M,
        *,
        partition: int | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Outgoing:
        """The record to produce for ``message``: this topic, its key, its bytes."""
        return Outgoing(self.name, self.key(message), self.encode(message), partition, headers)

    def decode(self, value: bytes | str | None, key: bytes | None = None) -> M:
        """A valid message whose key matches it, or :class:`Refused` saying why not."""
        if self.max_bytes is not None and value is not None and len(value) > self.max_bytes:
            raise Refused(
                Reason.TOO_LARGE,
                f"{self.name}: a value of {len(value):,} bytes; this topic's values are at most "
                f"{self.max_bytes:,}",
            )
        message = self._decode(value)
        if self._key_of is not None:
            expected = self._key_of(message)
            if key is None:
                raise Refused(
                    Reason.BAD_KEY, f"{self.name}: record has no key (expected {expected!r})"
                )
            if key != expected.encode():
                shown = key[:80].decode("utf-8", errors="backslashreplace")
                raise Refused(
                    Reason.BAD_KEY,
                    f"{self.name}: key {shown!r} is not the value's {expected!r}",
                )
        return message


def _request_id(message: Any) -> str:
    return str(message.request_id)


def _model_name(message: Any) -> str:
    return str(message.model_name)


def _drift_key(event: DriftEvent) -> str:
    return f"{event.feature}/{event.detector}"


MAX_LETTER_KEY = 1024
"""Longest original key a dead letter keeps as its own Kafka key (longer ones: a digest)."""
SMALL_VALUE_BYTES = 64 * 1024
"""Feedback, drift alarms and retrain requests: a few hundred bytes in practice."""
SAMPLE_VALUE_BYTES = 1024 * 1024
"""A labeled sample holds one feature vector."""


class Topics:
    """Every irisflow topic, typed. Built once per process from the settings."""

    def __init__(self, names: TopicNames) -> None:
        self.names = names
        self.requests: Topic[AnyRequest] = Topic(names.requests, decode_request, _request_id)
        self.predictions: Topic[AnyAnswer] = Topic(names.predictions, decode_answer, _request_id)
        self.feedback: Topic[Feedback] = Topic(
            names.feedback, _plain(Feedback), _request_id, max_bytes=SMALL_VALUE_BYTES
        )
        self.labeled: Topic[LabeledSample] = Topic(
            names.labeled, _plain(LabeledSample), _request_id, max_bytes=SAMPLE_VALUE_BYTES
        )
        self.model_updates: Topic[ModelUpdate] = Topic(
            names.model_updates, _plain(ModelUpdate), _model_name
        )
        self.drift_events: Topic[DriftEvent] = Topic(
            names.drift_events, _plain(DriftEvent), _drift_key, max_bytes=SMALL_VALUE_BYTES
        )
        self.retrain_requests: Topic[RetrainRequest] = Topic(
            names.retrain_requests,
            _plain(RetrainRequest),
            _model_name,
            max_bytes=SMALL_VALUE_BYTES,
        )
        self.dead_letters: Topic[DeadLetter] = Topic(names.dead_letters, _plain(DeadLetter), None)
        self.rollouts: Topic[RolloutState] = Topic(
            names.rollouts, _plain(RolloutState), _model_name
        )
        self.rollout_commands: Topic[RolloutCommand] = Topic(
            names.rollout_commands,
            _plain(RolloutCommand),
            _model_name,
            max_bytes=SMALL_VALUE_BYTES,
        )
        self.shadow_predictions: Topic[ShadowPrediction] = Topic(
            names.shadow_predictions, _plain(ShadowPrediction), _request_id
        )

    @classmethod
    def of(cls, kafka: KafkaSettings) -> Topics:
        return cls(kafka.topics)

    def by_name(self) -> Mapping[str, Topic[Any]]:
        return {
            topic.name: topic
            for topic in (
                self.requests,
                self.predictions,
                self.feedback,
                self.labeled,
                self.model_updates,
                self.drift_events,
                self.retrain_requests,
                self.dead_letters,
                self.rollouts,
                self.rollout_commands,
                self.shadow_predictions,
            )
        }


def letter_headers(letter: DeadLetter) -> tuple[tuple[str, bytes], ...]:
    """Origin and reason as Kafka headers, so tools can filter without decoding the JSON."""
    fields: Iterable[tuple[str, object]] = (
        ("reason", letter.reason),
        ("source-topic", letter.source_topic),
        ("source-partition", letter.partition),
        ("source-offset", letter.offset),
        ("consumer", letter.consumer),
        ("first-seen", letter.first_seen),
        ("error", letter.error[:256]),
    )
    return tuple(
        (HEADER_PREFIX + name, str(value).encode()) for name, value in fields if value is not None
    )


class DeadLetters:
    """Builds the dead letters one consumer sends, and counts them by topic and reason.

    ``max_original_bytes`` keeps a letter within the topic's message size: the original travels
    as base64 (4/3 of its size) inside JSON, so a record near the broker's limit is cut and its
    ``original_size`` says so (such a record cannot be replayed whole; the letter says why).
    """

    def __init__(
        self,
        topic: str,
        consumer: str,
        *,
        max_message_bytes: int,
        on_letter: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self.consumer = consumer
        self.max_original_bytes = max(1024, (max_message_bytes - 64 * 1024) * 3 // 4)
        self._on_letter = on_letter
        self._clock = clock

    @classmethod
    def to(
        cls,
        kafka: KafkaSettings,
        consumer: str,
        *,
        on_letter: Callable[[str, str, str], None] | None = None,
    ) -> DeadLetters:
        """The letters ``consumer`` sends to the configured dead-letter topic, sized for it."""
        return cls(
            kafka.topics.dead_letters,
            consumer,
            max_message_bytes=kafka.max_message_bytes,
            on_letter=on_letter,
        )

    def letter(
        self,
        record: Incoming,
        *,
        source_topic: str,
        reason: Reason | str,
        error: str,
        quiet: bool = False,
    ) -> Outgoing:
        """The letter for ``record``, logged (unless ``quiet``) and counted.

        Key and value together stay within the budget: a key longer than
        :data:`MAX_LETTER_KEY` is replaced by its digest as the letter's Kafka key and kept,
        whole or cut, in ``original_key``, so a letter can always be sent.
        """
        key, original_key, key_size = record.key, None, None
        if key is not None and len(key) > MAX_LETTER_KEY:
            original_key, key_size = key[: self.max_original_bytes // 2], len(key)
            key = b"sha256:" + hashlib.sha256(key).hexdigest().encode()
        original = record.value or b""
        budget = self.max_original_bytes - len(original_key or b"")
        letter = DeadLetter(
            source_topic=source_topic,
            partition=record.partition,
            offset=record.offset,
            original=original[:budget],
            original_size=len(original),
            original_key=original_key,
            original_key_size=key_size,
            error=clip(error),
            reason=str(reason),
            consumer=self.consumer,
            first_seen=self._clock(),
        )
        if not quiet:
            log.warning(
                "%s dead-lettered %s[%s] offset %s (%s): %s",
                self.consumer,
                source_topic,
                record.partition,
                record.offset,
                reason,
                letter.error[:300],
            )
        if self._on_letter is not None:
            self._on_letter(source_topic, str(reason), self.consumer)
        headers = letter_headers(letter)
        trace = trace_of(record.headers)
        if trace is not None:  # the letter joins the trace of the request that caused it
            headers += (trace.child().as_header(),)
        # The partition follows the key: the dead-letter topic may have fewer partitions.
        return Outgoing(self.topic, key, letter.to_bytes(), None, headers)
