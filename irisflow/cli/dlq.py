"""``irisflow dlq``: list, show and replay dead letters (the logic is in
:mod:`irisflow.cli.dead_letters`)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from irisflow.cli.context import settings_of as _settings
from irisflow.errors import IrisflowError
from irisflow.topics import Reason

if TYPE_CHECKING:
    from irisflow.cli.dead_letters import LetterFilter

__all__ = ["app"]

app = typer.Typer(
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
    from irisflow.cli.dead_letters import DlqError, LetterFilter, parse_time
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


@app.command(
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
    from irisflow.cli.dead_letters import read_letters

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


@app.command(
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
    from irisflow.cli.dead_letters import parse_position, read_letters

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


@app.command(
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
    from irisflow.cli.dead_letters import DlqError, parse_position, read_letters
    from irisflow.cli.replay import replay

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
