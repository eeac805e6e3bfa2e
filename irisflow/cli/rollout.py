"""``irisflow rollout``: start, watch, promote or abort a safe rollout, through Kafka.

Every command here is a :class:`~irisflow.schemas.RolloutCommand` on
``irisflow.rollout-commands``; the rollout controller (in ``irisflow trainer``, the only writer
of rollout state) applies it and answers in the next state on ``irisflow.rollouts``, which this
command follows until the answer with its id arrives. So the CLI, the HTTP API and the policy
can never race each other into two states, and no registry folder is needed here.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any, Literal

import typer

from irisflow.cli.context import settings_of as _settings
from irisflow.errors import KafkaUnavailable
from irisflow.schemas import (
    RolloutCommand,
    RolloutMode,
    RolloutState,
    RolloutStep,
    VersionReading,
)
from irisflow.settings import Settings

__all__ = [
    "EXIT_NO_ANSWER",
    "EXIT_REFUSED",
    "app",
    "format_state",
    "format_steps",
    "state_json",
]

EXIT_REFUSED = 1
"""The controller refused the command (its reason is printed)."""
EXIT_NO_ANSWER = 3
"""No controller answered in time: the command waits on Kafka for ``irisflow trainer``."""

app = typer.Typer(
    help=(
        "Safe rollouts: a candidate version meets live traffic beside the live champion before "
        "it replaces it.\n\n"
        "`start V --shadow` scores a share of requests with V too (clients see only the "
        "champion's answers); `start V --canary 0.1` lets V answer 10% of requests (chosen by "
        "request id). The policy (params.yaml: rollout.*) compares both versions on the same "
        "requests, moves the rollout on (shadow, canary, live) or rolls it back, unless started "
        "with --manual; `promote` and `abort` decide now.\n\n"
        "The rollout controller runs in `irisflow trainer`: each command waits (--wait) for its "
        "answer there, and exits 1 if refused, 3 if no trainer answered (the command then stays "
        "on Kafka and is applied when the trainer runs)."
    ),
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Wait = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0.0,
        help="seconds to wait for the rollout controller (in `irisflow trainer`) to answer",
    ),
]
Reason = Annotated[str, typer.Option("--reason", help="recorded with the decision")]
CONNECT_SECONDS = 30.0
"""How long reading the rollouts topic to its end may take before Kafka counts as unreachable."""


def _unreachable(settings: Settings, exc: BaseException) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"could not reach Kafka at {settings.kafka.bootstrap_servers} ({exc!r}): start it "
        "(`irisflow kafka start` or `irisflow up`) or point IRISFLOW_KAFKA_BOOTSTRAP at it"
    )


async def _ask(settings: Settings, command: RolloutCommand, wait: float) -> RolloutState | None:
    """Send ``command`` once the rollouts topic is read to its end, then the first state that
    answers it (``None`` after ``wait`` seconds)."""
    from aiokafka.errors import KafkaError

    from irisflow.kafka.rollout_topic import following, send_command

    def answers(state: RolloutState) -> bool:
        outcome = state.last_command
        return outcome is not None and outcome.command_id == command.command_id

    try:
        async with following(
            settings.kafka, settings.model_name, consumer="cli.rollout", timeout=CONNECT_SECONDS
        ) as follower:
            await send_command(settings.kafka, command)
            return await follower.wait_for(answers, timeout=wait)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _unreachable(settings, exc) from exc


def _read(settings: Settings) -> RolloutState | None:
    from aiokafka.errors import KafkaError

    from irisflow.kafka.rollout_topic import read_rollout_state

    try:
        return asyncio.run(
            read_rollout_state(settings.kafka, settings.model_name, timeout=CONNECT_SECONDS)
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise _unreachable(settings, exc) from exc


# ------------------------------------------------------------------------------- rendering


def state_json(model_name: str, state: RolloutState | None) -> dict[str, Any]:
    """The state as ``GET /v1/rollout`` shows it: no artifact bytes, the candidate in brief."""
    if state is None:
        return {
            "model_name": model_name,
            "stage": None,
            "active": False,
            "rollout_id": None,
            "candidate_version": None,
            "candidate": None,
            "champion_version": None,
            "share": 0.0,
            "automatic": True,
            "started_at": None,
            "updated_at": None,
            "readings": [],
            "steps": [],
            "last_command": None,
        }
    body = state.model_dump(mode="json", exclude={"candidate", "history", "schema_version"})
    candidate = state.candidate
    body["active"] = state.active
    body["candidate"] = (
        None
        if candidate is None
        else {
            "version": candidate.version,
            "algorithm": candidate.algorithm,
            "created_at": candidate.created_at,
            "trigger": candidate.trigger,
            "metrics": candidate.metrics,
        }
    )
    return body


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _reading_row(reading: VersionReading) -> list[str]:
    rate = reading.errors / reading.scored if reading.scored else None
    return [
        f"v{reading.version}",
        reading.role,
        str(reading.scored),
        str(reading.served),
        _num(rate),
        _num(reading.agreement),
        _num(reading.class_psi),
        _num(reading.confidence_mean),
        _ms(reading.latency_p99_seconds),
        str(reading.labeled),
        _num(reading.accuracy),
        _num(reading.macro_f1),
        _num(reading.estimated_accuracy),
    ]


_HEADER = [
    "version",
    "role",
    "scored",
    "served",
    "err_rate",
    "agreement",
    "class_psi",
    "conf_mean",
    "p99_ms",
    "labeled",
    "accuracy",
    "macro_f1",
    "est_acc",
]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]


def format_steps(steps: list[RolloutStep]) -> list[str]:
    return [
        f"  {_when(s.at)}  {s.stage.value:<11} v{s.version} share {s.share:.0%}  "
        f"by {s.decided_by}: {s.reason}"
        for s in steps
    ]


def format_state(model_name: str, state: RolloutState | None) -> str:
    """``irisflow rollout status``: stage, share, versions, the readings table, the decisions."""
    if state is None or state.stage is None:
        lines = [
            f"no rollout of {model_name} yet: start one with "
            "`irisflow rollout start VERSION --shadow` (or --canary SHARE)"
        ]
        if state is not None and state.last_command is not None:
            lines.append(_outcome_line(state))
        return "\n".join(lines)
    mode = "automatic" if state.automatic else "manual"
    lines = [
        f"{model_name} rollout {state.rollout_id}: {state.stage.value} ({mode}), "
        f"share {state.share:.0%}",
        f"  candidate v{state.candidate_version}, champion v{state.champion_version}; "
        f"started {_when(state.started_at)}, updated {_when(state.updated_at)}",
    ]
    if state.readings:
        lines += ["", *_table([_HEADER, *(_reading_row(r) for r in state.readings)])]
    if state.steps:
        lines += ["", "decisions:", *format_steps(state.steps)]
    if state.last_command is not None:
        lines += ["", _outcome_line(state)]
    return "\n".join(lines)


def _outcome_line(state: RolloutState) -> str:
    outcome = state.last_command
    assert outcome is not None
    verdict = "applied" if outcome.accepted else f"refused ({outcome.status}): {outcome.error}"
    return f"last command: {outcome.action} {outcome.command_id} {verdict}"


# -------------------------------------------------------------------------------- commands


def _run(
    ctx: typer.Context,
    action: Literal["start", "promote", "abort"],
    wait: float,
    as_json: bool,
    **fields: Any,
) -> None:
    settings = _settings(ctx)
    command = RolloutCommand(
        model_name=settings.model_name,
        command_id=f"cli-{uuid.uuid4().hex}",
        action=action,
        requested_by="cli",
        **fields,
    )
    state = asyncio.run(_ask(settings, command, wait))
    outcome = state.last_command if state is not None else None
    result = "pending" if outcome is None else "applied" if outcome.accepted else "refused"
    if as_json:
        body = {
            "result": result,
            "command_id": command.command_id,
            "action": action,
            "status": outcome.status if outcome else None,
            "error": outcome.error if outcome else None,
            "state": state_json(settings.model_name, state) if outcome else None,
        }
        typer.echo(json.dumps(body, indent=2))
    if outcome is None:
        if not as_json:
            typer.echo(
                f"no rollout controller answered within {wait:g}s: the {action} command "
                f"({command.command_id}) waits on {settings.kafka.topics.rollout_commands}, and "
                "`irisflow trainer` applies it when it runs; then see `irisflow rollout status`",
                err=True,
            )
        raise typer.Exit(EXIT_NO_ANSWER)
    assert state is not None
    if not outcome.accepted:
        if not as_json:
            typer.echo(
                f"refused ({outcome.status}): {outcome.error or 'no reason given'}", err=True
            )
        raise typer.Exit(EXIT_REFUSED)
    if not as_json:
        typer.echo(format_state(settings.model_name, state))


@app.command("start")
def rollout_start(
    ctx: typer.Context,
    version: Annotated[int, typer.Argument(min=1, help="the candidate (a registry version)")],
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="score a share of requests with VERSION too; clients get only the champion's "
            "answers",
        ),
    ] = False,
    canary: Annotated[
        float | None,
        typer.Option(
            "--canary",
            min=0.0,
            max=1.0,
            metavar="SHARE",
            help="let VERSION answer this share of requests (0 < SHARE <= 1), chosen by request id",
        ),
    ] = None,
    share: Annotated[
        float | None,
        typer.Option(
            "--share",
            min=0.0,
            max=1.0,
            help="with --shadow: the share of requests scored twice (default: "
            "rollout.shadow_share)",
        ),
    ] = None,
    manual: Annotated[
        bool,
        typer.Option(
            "--manual",
            help="the policy only watches: it neither advances nor rolls back; you promote or "
            "abort",
        ),
    ] = False,
    wait: Wait = 15.0,
    as_json: Json = False,
) -> None:
    """Start a rollout of VERSION beside the live champion: --shadow or --canary SHARE."""
    if shadow == (canary is not None):
        raise typer.BadParameter("give exactly one of --shadow and --canary SHARE")
    if canary is not None and share is not None:
        raise typer.BadParameter("--share goes with --shadow; --canary takes its share itself")
    chosen = canary if canary is not None else share
    if chosen is not None and chosen <= 0.0:
        raise typer.BadParameter("a share must be above 0 (at most 1)")
    mode = RolloutMode.SHADOW if shadow else RolloutMode.CANARY
    _run(
        ctx, "start", wait, as_json, version=version, mode=mode, share=chosen, automatic=not manual
    )


@app.command("promote")
def rollout_promote(
    ctx: typer.Context, reason: Reason = "", wait: Wait = 15.0, as_json: Json = False
) -> None:
    """Make the active rollout's candidate live now (the champion is replaced on every worker)."""
    _run(ctx, "promote", wait, as_json, reason=reason)


@app.command("abort")
def rollout_abort(
    ctx: typer.Context, reason: Reason = "", wait: Wait = 15.0, as_json: Json = False
) -> None:
    """End the active rollout now: the champion answers everything, the candidate is dropped."""
    _run(ctx, "abort", wait, as_json, reason=reason)


@app.command("status")
def rollout_status(ctx: typer.Context, as_json: Json = False) -> None:
    """The rollout now: stage, share, both versions' live readings and every decision."""
    settings = _settings(ctx)
    state = _read(settings)
    if as_json:
        typer.echo(json.dumps(state_json(settings.model_name, state), indent=2))
        return
    typer.echo(format_state(settings.model_name, state))


# ----------------------------------------------------------- `irisflow produce --candidate`


def start_candidate(
    settings: Settings,
    *,
    bad: bool,
    mode: Literal["shadow", "canary"],
    share: float | None,
    seed: int,
) -> str:
    """Train a candidate (``bad``: on shuffled labels), save it unpublished, start its rollout
    with the policy in charge; the rollout id. Exits like ``rollout start`` when refused."""
    from trainer.commands import train_candidate

    update = train_candidate(settings, shuffled_labels=bad, seed=seed)
    how = "fitted on shuffled labels" if bad else "trained like the live version"
    typer.echo(f"candidate: version {update.version} ({update.algorithm}, {how}), not published")
    command = RolloutCommand(
        model_name=settings.model_name,
        command_id=f"produce-{uuid.uuid4().hex}",
        action="start",
        version=update.version,
        mode=RolloutMode(mode),
        share=share,
        requested_by="produce",
        reason=f"irisflow produce --candidate {'bad' if bad else 'good'}",
    )
    state = asyncio.run(_ask(settings, command, 30.0))
    outcome = state.last_command if state is not None else None
    if state is None or outcome is None:
        typer.echo(
            "no rollout controller answered within 30s: is `irisflow trainer` running "
            "(`irisflow up` starts one)?",
            err=True,
        )
        raise typer.Exit(EXIT_NO_ANSWER)
    if not outcome.accepted or state.rollout_id is None:
        typer.echo(f"refused ({outcome.status}): {outcome.error}", err=True)
        raise typer.Exit(EXIT_REFUSED)
    typer.echo(
        f"rollout {state.rollout_id}: version {update.version} in {state.stage} at "
        f"{state.share:.0%} beside version {state.champion_version}; sending traffic"
    )
    return state.rollout_id


def show_rollout(settings: Settings, rollout_id: str) -> None:
    """After the traffic: where rollout ``rollout_id`` got to, with its decisions."""
    state = _read(settings)
    if state is None or state.rollout_id != rollout_id:
        typer.echo(f"rollout {rollout_id} is no longer the newest one: see `irisflow models show`")
        return
    typer.echo(format_state(settings.model_name, state))
    if state.active:
        typer.echo(
            "still in progress: send more traffic (the policy needs rollout.min_samples paired "
            "requests per stage), or `irisflow rollout promote|abort`"
        )
