"""``irisflow kafka``: the embedded broker (install, start, stop, status) and the topics."""

from __future__ import annotations

import asyncio

import typer

from irisflow.cli.context import settings_of as _settings

__all__ = ["app"]

app = typer.Typer(
    help="The embedded single-node Kafka broker (KRaft) and its topics.", no_args_is_help=True
)


@app.command("install")
def kafka_install(ctx: typer.Context) -> None:
    """Download Kafka's jars from Maven Central into the cache (once; later runs return at once)."""
    from irisflow.local.broker.runtime import KAFKA_VERSION, ensure_kafka_jars

    libs = ensure_kafka_jars(_settings(ctx).cache_dir)
    typer.echo(f"Apache Kafka {KAFKA_VERSION} jars ready in {libs}")


@app.command("start")
def kafka_start(ctx: typer.Context) -> None:
    """Start the local broker in the background and create irisflow's topics."""
    from irisflow.local.broker.embedded import start_embedded

    settings = _settings(ctx)
    status = start_embedded(settings)
    typer.echo(f"Kafka running at {status.bootstrap} (pid {status.pid}, data in {status.data_dir})")


@app.command("stop")
def kafka_stop(ctx: typer.Context) -> None:
    """Stop the local broker cleanly (its data is kept for the next start)."""
    from irisflow.local.broker.embedded import embedded_broker

    stopped = embedded_broker(_settings(ctx)).stop()
    typer.echo("Kafka stopped" if stopped else "Kafka was not running")


@app.command("status")
def kafka_status(ctx: typer.Context) -> None:
    """Say whether the local broker runs (exit code 1 when it does not)."""
    from irisflow.local.broker.embedded import embedded_broker

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


@app.command("topics")
def kafka_topics(ctx: typer.Context) -> None:
    """Create irisflow's topics with the configured partitions and configs (idempotent)."""
    from irisflow.kafka.admin import ensure_topics

    created = asyncio.run(ensure_topics(_settings(ctx).kafka))
    typer.echo("created: " + ", ".join(created) if created else "all topics exist")
