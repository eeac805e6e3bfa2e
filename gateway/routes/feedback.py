"""``POST /v1/feedback``: the true label of an earlier prediction, published to Kafka."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.bodies import ErrorBody, FeedbackAccepted, FeedbackBody
from gateway.deps import Bridge, Checks, Kafka, Metrics, Settings, TripOf
from irisflow.schemas import Feedback

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    responses={
        422: {"model": ErrorBody, "description": "The label is not one of the model's classes"},
        503: {"model": ErrorBody, "description": "Kafka unreachable, or no model is live yet"},
    },
)
async def feedback(
    body: FeedbackBody,
    checks: Checks,
    kafka: Kafka,
    bridge: Bridge,
    metrics: Metrics,
    settings: Settings,
    trip: TripOf,
) -> FeedbackAccepted:
    """Joined with its prediction by the workers: live accuracy, then retraining data."""
    checks.check_label(body.label)
    kafka.require()
    message = Feedback(request_id=body.request_id, label=body.label)
    record = bridge.topics.feedback.record(message, headers=trip.request_headers())
    await bridge.publish(record, timeout=settings.gateway.predict_timeout_seconds)
    metrics.published.labels("feedback").inc()
    return FeedbackAccepted(request_id=body.request_id, label=body.label, topic=record.topic)
