"""``irisflow``: one entry point with a subcommand per role.

Role packages are imported inside their command, so ``irisflow kafka status`` does not pay for
scikit-learn and Faust, and the shared package stays free of role imports at import time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from irisflow.errors import IrisflowError
from irisflow.settings import Settings, load_settings
from irisflow.topics import Reason

if TYPE_CHECKING:
    from irisflow.dlq import LetterFilter

__all__ = ["app", "main"]

app = typer.Typer(
    help=(
        "irisflow: serve, monitor and retrain classifiers over Apache Kafka.\n\n"
        "Quick start: `irisflow up` starts a local Kafka broker, trains a first model if none "
        "is live, and runs a scoring worker and the HTTP gateway (http://127.0.0.1:8000/docs)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(
    help="The embedded single-node Kafka broker (KRaft) and its topics.", no_args_is_help=True
)
models_app = typer.Typer(
    help="Model versions in the registry: list, show, promote (rollback).", no_args_is_help=True
)
dlq_app = typer.Typer(
    help=(
        "Dead letters: records a consumer refused, with why and where they came from.\n\n"
        "Every refused record lands on the dead-letter topic (kafka.topics.dead_letters) with "
        "its original bytes and key, its source topic, partition and offset, a reason "
        f"({', '.join(Reason)}) and the "
        "consumer that refused it. Reading never moves any consumer group's offsets.\n\n"
        "Examples:\n\n"
        "  irisflow dlq list --reason out_of_domain --since 2024-06-10T08:00Z\n\n"
        "  irisflow dlq show 0:17\n\n"
        "  irisflow dlq replay --reason training_failed --dry-run"
    ),
    no_args_is_help=True,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(models_app, name="models")
app.add_typer(dlq_app, name="dlq")

log = logging.getLogger("irisflow")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@app.callback()
def _root(
    ctx: typer.Context,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params", "-p", help="params file (default: $IRISFLOW_PARAMS or ./params.yaml)"
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    ] = None,
) -> None:
    overrides = {"log_level": log_level} if log_level else None
    settings = load_settings(params, overrides=overrides)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(
            max(logging.WARNING, logging.getLevelName(settings.log_level))
        )
    ctx.obj = settings


# ----------------------------------------------------------------------------------- kafka


@kafka_app.command("install")
def kafka_install(ctx: typer.Context) -> None:
    """Download Kafka's jars from Maven Central into the cache (once; later runs return at once)."""
    from irisflow.kafka.runtime import KAFKA_VERSION, ensure_kafka_jars

    libs = ensure_kafka_jars(_settings(ctx).cache_dir)
    typer.echo(f"Apache Kafka {KAFKA_VERSION} jars ready in {libs}")


@kafka_app.command("start")
def kafka_start(ctx: typer.Context) -> None:
    """Start the local broker in the background and create irisflow's topics."""
    from irisflow.kafka.embedded import start_embedded

    settings = _settings(ctx)
    status = start_embedded(settings)
    typer.echo(f"Kafka running at {status.bootstrap} (pid {status.pid}, data in {status.data_dir})")


@kafka_app.command("stop")
def kafka_stop(ctx: typer.Context) -> None:
    """Stop the local broker cleanly (its data is kept for the next start)."""
    from irisflow.kafka.embedded import embedded_broker

    stopped = embedded_broker(_settings(ctx)).stop()
    typer.echo("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def kafka_status(ctx: typer.Context) -> None:
    """Say whether the local broker runs (exit code 1 when it does not)."""
    from irisflow.kafka.embedded import embedded_broker

    settings = _settings(ctx)
    if not settings.kafka.embedded:
        typer.echo(
            f"using an external cluster at {settings.kafka.bootstrap} (IRISFLOW_KAFKA_BOOTSTRAP)"
        )
        return
    status = embedded_broker(settings).status()
    if status.running:
        typer.echo(f"running at {status.bootstrap} (pid {status.pid}, data in {status.data_dir})")
    else:
        typer.echo(f"not running (data in {status.data_dir}); start it with `irisflow kafka start`")
        raise typer.Exit(1)


@kafka_app.command("topics")
def kafka_topics(ctx: typer.Context) -> None:
    """Create irisflow's topics with the configured partitions and configs (idempotent)."""
    from irisflow.kafka.admin import ensure_topics

    created = asyncio.run(ensure_topics(_settings(ctx).kafka))
    typer.echo("created: " + ", ".join(created) if created else "all topics exist")


# ---------------------------------------------------------------------------------- roles


@app.command()
def train(
    ctx: typer.Context,
    publish: Annotated[bool, typer.Option(help="publish the new version to Kafka")] = True,
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
    --no-publish nothing touches Kafka (DVC's `dvc repro` runs it that way).
    """
    from trainer.commands import run_train

    run_train(_settings(ctx), publish=publish, trigger=trigger, report_dir=report_dir)


@app.command()
def trainer(ctx: typer.Context) -> None:
    """Run the online retraining service: retrain on new labels, drift alarms and requests."""
    from trainer.run import run_trainer

    run_trainer(_settings(ctx))


@app.command()
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


@app.command()
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


@app.command()
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
) -> None:
    """Publish synthetic traffic drawn from the data set, with a progress bar.

    Examples: `irisflow produce -n 5000 --rate 500 --feedback 1` sends labeled traffic;
    `irisflow produce -n 2000 --drift-feature petal_length --drift-after 500` shifts one
    feature by 3 standard deviations after 500 requests, which the drift detectors should flag.
    """
    from producers.replay import replay
    from producers.traffic import Scenario

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
    report = asyncio.run(replay(_settings(ctx), scenario, rate=rate))
    typer.echo(
        f"sent {report.sent} requests ({report.drifted} drifted, {report.feedback} with feedback) "
        f"in {report.seconds:.2f}s ({report.rate:,.0f}/s)"
    )


@app.command()
def up(ctx: typer.Context) -> None:
    """Run everything locally: broker, first model, worker, gateway. Ctrl-C stops it all."""
    from irisflow.local import run_local_stack

    run_local_stack(_settings(ctx))


# --------------------------------------------------------------------------------- models


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Every version in the registry, with its metrics; the live one is marked."""
    from trainer.commands import list_models

    rows = list_models(_settings(ctx))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no versions yet: run `irisflow train`")
    for row in rows:
        mark = "*" if row["live"] else " "
        typer.echo(
            f"{mark} v{row['version']:<4} {row['algorithm']:<20} trigger={row['trigger']:<10} "
            f"holdout_f1_macro={row['metrics'].get('holdout_f1_macro', float('nan')):.3f}"
        )


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    version: int,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """One version's metadata (and the path of its model card)."""
    from irisflow.registry import LocalRegistry

    settings = _settings(ctx)
    meta = LocalRegistry(settings.registry_dir).metadata(version)
    body = meta.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    card = settings.registry_dir / f"v{version:04d}" / "card.md"
    typer.echo(card.read_text() if card.exists() else json.dumps(body, indent=2))


@app.command()
def retrain(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="recorded with the decision")] = "manual request",
) -> None:
    """Ask the running trainer service to retrain now (publishes a retrain request)."""
    from irisflow.kafka.clients import make_producer, send
    from irisflow.schemas import RetrainRequest
    from irisflow.topics import Topics

    settings = _settings(ctx)

    async def request_retraining() -> None:
        producer = make_producer(settings.kafka)
        await producer.start()
        try:
            request = RetrainRequest(
                model_name=settings.model_name, reason=reason, requested_by="cli"
            )
            await send(producer, Topics.of(settings.kafka).retrain_requests.record(request))
        finally:
            await producer.stop()

    asyncio.run(request_retraining())
    typer.echo(f"retrain requested for {settings.model_name}; `irisflow trainer` acts on it")


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: int) -> None:
    """Make VERSION live again by republishing it (this is how you roll back)."""
    from trainer.commands import promote

    update = promote(_settings(ctx), version)
    typer.echo(f"{update.model_name} version {update.version} republished; workers swap to it now")


# ------------------------------------------------------------------------------------ dlq

TopicOption = Annotated[
    str | None, typer.Option("--topic", help="only letters from this source topic")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="only this reason (e.g. out_of_domain)")
]
ConsumerOption = Annotated[
    str | None, typer.Option("--consumer", help="only letters refused by this consumer")
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="first seen at or after: ISO 8601 (UTC unless zoned) or Unix s"),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="first seen at or before (same formats as --since)")
]
LimitOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="at most N letters, oldest first")
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _letter_filter(
    topic: str | None,
    reason: str | None,
    consumer: str | None,
    since: str | None,
    until: str | None,
) -> LetterFilter:
    from irisflow.dlq import DlqError, LetterFilter, parse_time
    from irisflow.topics import Reason

    known = [str(r) for r in Reason]
    if reason is not None and reason not in known:
        raise DlqError(f"unknown reason {reason!r}: use one of {', '.join(known)}")
    return LetterFilter(
        topic=topic,
        reason=reason,
        consumer=consumer,
        since=parse_time(since) if since is not None else None,
        until=parse_time(until) if until is not None else None,
    )


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dlq_app.command(
    "list",
    help=(
        "A table of dead letters: position, first seen, origin, reason, consumer, error.\n\n"
        "POSITION is PARTITION:OFFSET on the dead-letter topic; give it to `show` or `replay`. "
        "Filters combine; times are ISO 8601 (UTC unless zoned) or Unix seconds.\n\n"
        "Examples:\n\n"
        "  irisflow dlq list\n\n"
        "  irisflow dlq list --topic irisflow.labeled --reason out_of_domain "
        "--since 2024-06-10T08:00Z --limit 20\n\n"
        "  irisflow dlq list --consumer trainer --json"
    ),
)
def dlq_list(
    ctx: typer.Context,
    topic: TopicOption = None,
    reason: ReasonOption = None,
    consumer: ConsumerOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Tables for people, ``--json`` for scripts; the count goes to stderr so pipes stay clean."""
    from irisflow.dlq import read_letters

    settings = _settings(ctx)
    where = _letter_filter(topic, reason, consumer, since, until)
    reading = asyncio.run(read_letters(settings.kafka, where, limit=limit, keep_originals=False))
    if as_json:
        typer.echo(json.dumps([letter.summary() for letter in reading.letters], indent=2))
        return
    rows = [
        (s.position, s.summary()["first_seen"], s.origin, s.letter.reason, s.letter.consumer)
        for s in reading.letters
    ]
    header = ("POSITION", "FIRST SEEN", "SOURCE", "REASON", "CONSUMER")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  ERROR")
    for row, stored in zip(rows, reading.letters, strict=True):
        cells = "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        typer.echo(f"{cells}  {_one_line(stored.letter.error, 100)}")
    unreadable = f"; {reading.unreadable} records there are not dead letters" * bool(
        reading.unreadable
    )
    typer.echo(
        f"{len(reading.letters)} letters shown of {reading.matched} matching, {reading.scanned} "
        f"read from {settings.kafka.topics.dead_letters}{unreadable}",
        err=True,
    )


@dlq_app.command(
    "show",
    help=(
        "One dead letter in full: origin, reason, consumer, error, key and the original bytes "
        "(as text when they are UTF-8, else base64).\n\n"
        "Examples:\n\n"
        "  irisflow dlq show 0:17\n\n"
        "  irisflow dlq show 17 --json   (a bare offset is fine when one partition has it)"
    ),
)
def dlq_show(
    ctx: typer.Context,
    position: Annotated[str, typer.Argument(help="PARTITION:OFFSET (or OFFSET) from `list`")],
    as_json: JsonOption = False,
) -> None:
    """Reads just the one record (a seek, not a scan of the whole topic)."""
    from irisflow.dlq import parse_position, read_letters

    settings = _settings(ctx)
    reading = asyncio.run(
        read_letters(settings.kafka, positions=[parse_position(position)], progress=False)
    )
    if not reading.letters:
        raise IrisflowError(
            f"the record at {position} on {settings.kafka.topics.dead_letters} is not a dead "
            "letter (it does not decode as one)"
        )
    body = reading.letters[0].full()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    for name in ("position", "first_seen", "reason", "consumer", "error"):
        typer.echo(f"{name.replace('_', ' '):<12}{body[name]}")
    typer.echo(f"{'source':<12}{reading.letters[0].origin}")
    for name in ("key", "original"):
        shown = body[name]
        kind = "base64" if "base64" in shown else "UTF-8"
        typer.echo(f"{name:<12}({kind}) {shown.get('text', shown.get('base64'))}")
    if body["truncated"]:
        typer.echo(f"{'':<12}cut from {body['original_size']:,} bytes: cannot be replayed")


@dlq_app.command(
    "replay",
    help=(
        "Publish letters' original bytes, with their original keys, to their source topic "
        "again (or to --to TOPIC).\n\n"
        "Fix the cause first: a record that fails again is dead-lettered again. Choose letters "
        "by position, by the same filters as `list`, or --all. Letters whose original was cut "
        "to fit the dead-letter topic are refused (exit code 1). Every replayed record carries "
        "an irisflow-replay-of header naming its letter. A record dead-lettered by several "
        "consumers (same source topic, partition and offset) is replayed once; the other "
        "letters are reported as skipped. Earlier replays are not looked for: replaying a "
        "letter twice publishes it twice.\n\n"
        "Examples:\n\n"
        "  irisflow dlq replay 0:17 1:4\n\n"
        "  irisflow dlq replay --reason training_failed --dry-run\n\n"
        "  irisflow dlq replay --topic irisflow.feedback --to irisflow.feedback-retry --json"
    ),
)
def dlq_replay(
    ctx: typer.Context,
    positions: Annotated[
        list[str] | None,
        typer.Argument(help="PARTITION:OFFSET (or OFFSET) of letters to replay, from `list`"),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="publish to this topic instead of the source")
    ] = None,
    topic: TopicOption = None,
    reason: ReasonOption = None,
    consumer: ConsumerOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = None,
    everything: Annotated[
        bool, typer.Option("--all", help="replay every letter (no filter needed)")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would be sent; send nothing")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Refuses to run with no selection at all: replaying everything should be asked for."""
    from irisflow.dlq import DlqError, parse_position, read_letters, replay

    settings = _settings(ctx)
    where = _letter_filter(topic, reason, consumer, since, until)
    chosen = [parse_position(p) for p in positions or []]
    if not (chosen or everything or any((topic, reason, consumer, since, until))):
        raise DlqError(
            "say which letters to replay: positions (0:17), a filter (--topic, --reason, "
            "--consumer, --since, --until) or --all"
        )
    reading = asyncio.run(read_letters(settings.kafka, where, positions=chosen, limit=limit))
    report = asyncio.run(replay(settings.kafka, reading.letters, to=to, dry_run=dry_run))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        verb = "would send" if dry_run else "sent"
        for stored, target in report.sent:
            size = len(stored.letter.original)
            typer.echo(f"{verb} {stored.position} -> {target} ({size:,} bytes, {stored.origin})")
        for stored, why in report.refused:
            typer.echo(f"refused {stored.position}: {why}")
        for stored, first in report.skipped:
            typer.echo(
                f"skipped {stored.position}: same origin ({stored.origin}) as {first.position}"
            )
        typer.echo(
            f"{verb} {len(report.sent)}, refused {len(report.refused)}, skipped "
            f"{len(report.skipped)} duplicates"
        )
    if report.refused:
        raise typer.Exit(1)


def main() -> NoReturn:
    try:
        app()
    except IrisflowError as exc:
        typer.secho(f"irisflow: error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(0)


if __name__ == "__main__":
    main()
