"""``irisflow``: one entry point with a subcommand per role, the roof of the house.

Nothing imports this package; it imports the roles (inside each command, so a quick command
does not pay for scikit-learn and Faust) and the core.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from irisflow.cli import dlq, kafka, models, roles, rollout
from irisflow.errors import IrisflowError
from irisflow.settings import load_settings

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
app.add_typer(kafka.app, name="kafka")
app.add_typer(models.app, name="models")
app.add_typer(dlq.app, name="dlq")
app.add_typer(rollout.app, name="rollout")
for command in (
    roles.train,
    roles.trainer,
    roles.worker,
    roles.gateway,
    roles.produce,
    roles.up,
    roles.retrain,
):
    app.command()(command)

log = logging.getLogger("irisflow")


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
