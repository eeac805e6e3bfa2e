"""The commands that run a role (``train``, ``trainer``, ``worker``, ``gateway``, ``produce``,
``up``) or talk to one (``retrain``). Role packages are imported inside their command, so
``irisflow kafka status`` does not pay for scikit-learn and Faust."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from irisflow.cli.context import settings_of as _settings

__all__ = ["gateway", "produce", "retrain", "train", "trainer", "up", "worker"]


def train(
    ctx: typer.Context,
    publish: Annotated[
        bool,
        typer.Option(help="publish the new version to Kafka (else: saved to the registry only)"),
    ] = True,
    trigger: Annotated[
        str, typer.Option(help="recorded in the registry as why it was trained")
    ] = "manual",
    report_dir: Annotated[
        Path | None,
        typer.Option(
            help="also write metrics.json, candidates.json, model card, PNG and model here"
        ),
    ] = None,
) -> None:
    """Select the best of five candidates by cross-validation and publish it as a new version.

    Prints every candidate's cross-validated score and the winner's holdout metrics. With
    --no-publish nothing touches Kafka (DVC's `dvc repro` runs it that way): the version is
    saved to the registry only, a candidate for `irisflow rollout start V`.
    """
    from trainer.commands import run_train

    run_train(_settings(ctx), publish=publish, trigger=trigger, report_dir=report_dir)


def trainer(ctx: typer.Context) -> None:
    """Run the online retraining service: retrain on new labels, drift alarms and requests."""
    from trainer.run import run_trainer

    run_trainer(_settings(ctx))


def worker(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="web port for /metrics (default 6066)")] = None,
) -> None:
    """Run a scoring worker: score requests, join feedback, watch drift, serve /metrics and /health.

    Workers share the partitions (kafka.partitions): start more, each with its own --port.

    A worker that dies, even with kill -9, hands its partitions to the others.

    Requests are read by the scoring lane (scoring.consumer: lane) or a Faust agent (agent).
    """
    from streams.run import run_worker

    settings = _settings(ctx)
    if port is not None:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"port": port})}
        )
    run_worker(settings)


def gateway(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8000)")] = None,
) -> None:
    """Run the HTTP gateway (Swagger UI at /docs)."""
    from gateway.run import run_gateway

    settings = _settings(ctx)
    updates: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port}.items() if v is not None
    }
    if updates:
        settings = settings.model_copy(
            update={"gateway": settings.gateway.model_copy(update=updates)}
        )
    run_gateway(settings)


def produce(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("--count", "-n", help="requests to send")] = 1000,
    rate: Annotated[
        float | None, typer.Option(help="requests per second (default: as fast as possible)")
    ] = None,
    feedback: Annotated[
        float, typer.Option(help="share of requests whose true label is sent as feedback (0-1)")
    ] = 0.0,
    label_noise: Annotated[float, typer.Option(help="share of feedback with a wrong label")] = 0.0,
    label_delay: Annotated[float, typer.Option(help="seconds between request and feedback")] = 0.0,
    drift_feature: Annotated[
        str | None, typer.Option(help="shift this feature to simulate drift")
    ] = None,
    drift_shift: Annotated[float, typer.Option(help="shift in standard deviations")] = 3.0,
    drift_after: Annotated[int, typer.Option(help="first request index that drifts")] = 0,
    seed: Annotated[int, typer.Option(help="random seed of the scenario")] = 0,
    candidate: Annotated[
        Literal["good", "bad"] | None,
        typer.Option(
            help="first train a rollout candidate and start its rollout: good (trained like "
            "the live one) or bad (fitted on shuffled labels); the trainer's policy decides"
        ),
    ] = None,
    candidate_mode: Annotated[
        Literal["shadow", "canary"] | None,
        typer.Option(help="the candidate's first stage (default: good shadow, bad canary)"),
    ] = None,
    candidate_share: Annotated[
        float | None, typer.Option(help="its share of requests (default: the policy's)")
    ] = None,
) -> None:
    """Publish synthetic traffic drawn from the data set, with a progress bar.

    Examples: `irisflow produce -n 5000 --rate 500 --feedback 1` sends labeled traffic;
    `irisflow produce -n 2000 --drift-feature petal_length --drift-after 500` shifts one
    feature by 3 standard deviations after 500 requests, which the drift detectors should flag.

    Rollouts (needs `irisflow trainer` running, as `irisflow up` does):
    `irisflow produce -n 3000 --rate 50 --feedback 0.5 --candidate good` trains a candidate,
    starts it in shadow and sends the traffic the policy judges it on (shadow, canary, live);
    `--candidate bad` fits one on shuffled labels and starts it in canary, where the policy
    rolls it back. The rollout's state and decisions are printed at the end
    (`irisflow rollout status` shows them any time).
    """
    from producers.replay import replay
    from producers.traffic import Scenario

    settings = _settings(ctx)
    rollout_id = None
    if candidate is not None:
        from irisflow.cli.rollout import start_candidate

        rollout_id = start_candidate(
            settings,
            bad=candidate == "bad",
            mode=candidate_mode or ("shadow" if candidate == "good" else "canary"),
            share=candidate_share,
            seed=seed,
        )

    scenario = Scenario(
        count=count,
        seed=seed,
        drift_feature=drift_feature,
        drift_shift=drift_shift,
        drift_after=drift_after,
        feedback_rate=feedback,
        label_noise=label_noise,
        label_delay=label_delay,
    )
    report = asyncio.run(replay(settings, scenario, rate=rate))
    typer.echo(
        f"sent {report.sent} requests ({report.drifted} drifted, {report.feedback} with feedback) "
        f"in {report.seconds:.2f}s ({report.rate:,.0f}/s)"
    )
    if rollout_id is not None:
        from irisflow.cli.rollout import show_rollout

        show_rollout(settings, rollout_id)


def up(ctx: typer.Context) -> None:
    """Run everything locally: broker, first model, worker, gateway. Ctrl-C stops it all."""
    from irisflow.local.stack import run_local_stack

    run_local_stack(_settings(ctx))


def retrain(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="recorded with the decision")] = "manual request",
    as_json: Annotated[
        bool, typer.Option("--json", help="print the request as JSON (for scripts)")
    ] = False,
) -> None:
    """Ask the running trainer service to retrain now (publishes a retrain request).

    The trainer decides as for any retraining (see `irisflow models list`).
    """
    from irisflow.kafka.clients import make_producer, send
    from irisflow.schemas import RetrainRequest
    from irisflow.topics import Topics

    settings = _settings(ctx)
    request = RetrainRequest(model_name=settings.model_name, reason=reason, requested_by="cli")
    record = Topics.of(settings.kafka).retrain_requests.record(request)

    async def request_retraining() -> int | None:
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            return await send(producer, record)
        finally:
            await producer.stop()

    partition = asyncio.run(request_retraining())
    if as_json:
        body = {**request.model_dump(mode="json"), "topic": record.topic, "partition": partition}
        typer.echo(json.dumps(body))
        return
    typer.echo(f"retrain requested for {settings.model_name}; `irisflow trainer` acts on it")
