"""What the trainer reads, decoded and checked in one place, so a bad record costs one letter.

Every record on the trainer's three topics goes through its topic's codec (value and key); a
labeled sample must also fit the model it would retrain: the champion's feature names and value
domain, or, before any champion, the base data set's names and statistics. A sample the model
could not compute with (``sepal_length: 1e39`` is infinity in float32) would otherwise enter the
training window and fail every retraining after it.

Pure: no Kafka client, no framework.
"""

from __future__ import annotations

from irisflow.features import FeatureSchema
from irisflow.schemas import DriftEvent, LabeledSample, ModelUpdate, RetrainRequest
from irisflow.topics import Incoming, Reason, Refused, Topics
from trainer.data import Dataset
from trainer.training import reference_statistics

__all__ = ["TrainerInput", "TrainerMessage"]

TrainerMessage = LabeledSample | RetrainRequest | DriftEvent


class TrainerInput:
    """Turns one record of ``labeled``, ``drift-events`` or ``retrain-requests`` into a message.

    :meth:`decode` returns the message or raises :class:`~irisflow.topics.Refused` with the
    reason its dead letter carries.
    """

    def __init__(
        self, topics: Topics, base: Dataset, *, max_reference_std: float | None = None
    ) -> None:
        self._topics = topics
        self._limit = max_reference_std
        self.schema = FeatureSchema(
            base.feature_names, reference_statistics(base), max_reference_std=max_reference_std
        )

    def follow(self, champion: ModelUpdate) -> None:
        """Check later samples against the model they would replace."""
        self.schema = FeatureSchema(
            champion.feature_names, champion.reference_stats, max_reference_std=self._limit
        )

    def decode(self, record: Incoming) -> TrainerMessage:
        topics = self._topics
        if record.topic == topics.labeled.name:
            return self._sample(topics.labeled.decode(record.value, record.key))
        if record.topic == topics.retrain_requests.name:
            return topics.retrain_requests.decode(record.value, record.key)
        if record.topic == topics.drift_events.name:
            return topics.drift_events.decode(record.value, record.key)
        raise Refused(Reason.PROCESSING_FAILED, f"the trainer does not read {record.topic}")

    def _sample(self, sample: LabeledSample) -> LabeledSample:
        problems = self.schema.problems(sample.features, "features")
        if not problems:
            return sample
        names_wrong = any(problem.kind != "domain" for problem in problems)
        raise Refused(
            Reason.SCHEMA_MISMATCH if names_wrong else Reason.OUT_OF_DOMAIN,
            f"LabeledSample {sample.request_id}: {self.schema.describe(problems)}",
        )
