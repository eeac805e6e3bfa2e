"""``irisflow kafka``: the embedded broker or cluster (install, start, stop, status, fault
drills) and the topics."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

import typer

from irisflow.cli.context import settings_of as _settings
from irisflow.settings import Settings

__all__ = ["app"]

app = typer.Typer(
    help="The embedded Kafka (KRaft): one broker, or a local cluster of several for fault "
    "drills, and irisflow's topics.",
    no_args_is_help=True,
)

Brokers = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        min=1,
        max=9,
        help="How many brokers the embedded cluster has (default: kafka.embedded_brokers, "
        "IRISFLOW_KAFKA_BROKERS; 3 for a replicated cluster). Give the same number to every "
        "command, or export IRISFLOW_KAFKA_BROKERS.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="machine-readable")]


def _with_brokers(ctx: typer.Context, brokers: int | None) -> Settings:
    settings = _settings(ctx)
    if brokers is None or brokers == settings.kafka.embedded_brokers:
        return settings
    kafka = settings.kafka.model_copy(update={"embedded_brokers": brokers})
    return settings.model_copy(update={"kafka": kafka})


def _require_embedded(settings: Settings) -> None:
    if not settings.kafka.embedded:
        typer.echo(
            f"using an external cluster at {settings.kafka.bootstrap} (IRISFLOW_KAFKA_BOOTSTRAP): "
            "the embedded brokers are not used",
            err=True,
        )
        raise typer.Exit(2)


@app.command("install")
def kafka_install(ctx: typer.Context) -> None:
    """Download Kafka's jars from Maven Central into the cache (once; later runs return at once)."""
    from irisflow.local.broker.runtime import KAFKA_VERSION, ensure_kafka_jars

    libs = ensure_kafka_jars(_settings(ctx).cache_dir)
    typer.echo(f"Apache Kafka {KAFKA_VERSION} jars ready in {libs}")


@app.command("start")
def kafka_start(ctx: typer.Context, brokers: Brokers = None) -> None:
    """Start the local broker(s) in the background and create irisflow's topics.

    With --brokers 3: three KRaft nodes (each a broker and a controller) on 127.0.0.1, ports
    9092/9093, 9094/9095, 9096/9097; topics get 3 replicas and min.insync.replicas 2.
    """
    from irisflow.local.broker.embedded import start_embedded

    settings = _with_brokers(ctx, brokers)
    status = start_embedded(settings)
    for broker in status.brokers:
        typer.echo(
            f"Kafka broker {broker.node_id} running at {broker.bootstrap} (pid {broker.pid}, "
            f"data in {broker.data_dir})"
        )
    count = settings.kafka.embedded_brokers
    if count > 1 and _settings(ctx).kafka.embedded_brokers != count:
        typer.echo(
            f"export IRISFLOW_KAFKA_BROKERS={count} so that irisflow's processes (and the "
            "other `irisflow kafka` commands) know every broker"
        )


@app.command("stop")
def kafka_stop(ctx: typer.Context, brokers: Brokers = None) -> None:
    """Stop the local broker(s) cleanly (their data is kept for the next start)."""
    from irisflow.local.broker.embedded import embedded_cluster

    stopped = embedded_cluster(_with_brokers(ctx, brokers)).stop()
    typer.echo("Kafka stopped" if stopped else "Kafka was not running")


def _leaders(settings: Settings) -> list[dict[str, Any]]:
    from irisflow.errors import KafkaUnavailable
    from irisflow.kafka.admin import describe_partitions

    # A stopped broker is what a drill is about: aiokafka's connection errors are not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        states = asyncio.run(describe_partitions(settings.kafka, timeout=5.0))
    except KafkaUnavailable:
        return []
    return [
        {
            "topic": s.topic,
            "partition": s.partition,
            "leader": s.leader,
            "replicas": list(s.replicas),
            "isr": list(s.isr),
        }
        for s in states
    ]


@app.command("status")
def kafka_status(ctx: typer.Context, brokers: Brokers = None, as_json: Json = False) -> None:
    """Each broker (running or not) and who leads each partition of irisflow's topics.

    Exit code 1 when a broker is down. A partition whose leader is -1 has no live replica:
    it takes no writes until one of its brokers is back.
    """
    from irisflow.local.broker.embedded import embedded_cluster

    settings = _with_brokers(ctx, brokers)
    if not settings.kafka.embedded:
        leaders = _leaders(settings)
        if as_json:
            typer.echo(json.dumps({"external": settings.kafka.bootstrap, "partitions": leaders}))
        else:
            typer.echo(
                f"using an external cluster at {settings.kafka.bootstrap} "
                "(IRISFLOW_KAFKA_BOOTSTRAP)"
            )
            _print_leaders(leaders)
        return
    status = embedded_cluster(settings).status()
    leaders = _leaders(settings) if any(b.running for b in status.brokers) else []
    if as_json:
        document = {
            "brokers": [
                {
                    "broker": b.node_id,
                    "running": b.running,
                    "pid": b.pid,
                    "address": b.bootstrap,
                    "data_dir": str(b.data_dir),
                }
                for b in status.brokers
            ],
            "partitions": leaders,
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        for b in status.brokers:
            state = f"running (pid {b.pid})" if b.running else "not running"
            typer.echo(f"broker {b.node_id} at {b.bootstrap}: {state}, data in {b.data_dir}")
        if not any(b.running for b in status.brokers):
            typer.echo("start it with `irisflow kafka start`")
        _print_leaders(leaders)
    if not status.running:
        raise typer.Exit(1)


def _print_leaders(leaders: list[dict[str, Any]]) -> None:
    if not leaders:
        return
    typer.echo(f"\n{'topic':40} {'part':>4} {'leader':>6}  replicas  in sync")
    for p in leaders:
        leader = "none" if p["leader"] < 0 else str(p["leader"])
        replicas = ",".join(map(str, p["replicas"]))
        isr = ",".join(map(str, p["isr"]))
        typer.echo(f"{p['topic']:40} {p['partition']:>4} {leader:>6}  {replicas:8}  {isr}")


@app.command("stop-broker")
def kafka_stop_broker(
    ctx: typer.Context,
    number: Annotated[int, typer.Argument(help="which broker: 1 to --brokers")],
    brokers: Brokers = None,
    kill: Annotated[
        bool,
        typer.Option(
            "--kill", help="SIGKILL, as a crash: no clean shutdown, no leadership handed over"
        ),
    ] = False,
) -> None:
    """Stop one broker of the local cluster (a fault drill); `start-broker N` brings it back."""
    from irisflow.local.broker.embedded import embedded_cluster

    settings = _with_brokers(ctx, brokers)
    _require_embedded(settings)
    stopped = embedded_cluster(settings).stop_broker(number, kill=kill)
    how = "killed" if kill else "stopped"
    typer.echo(f"broker {number} {how}" if stopped else f"broker {number} was not running")


@app.command("start-broker")
def kafka_start_broker(
    ctx: typer.Context,
    number: Annotated[int, typer.Argument(help="which broker: 1 to --brokers")],
    brokers: Brokers = None,
) -> None:
    """Start one broker of the local cluster again (after `stop-broker N`)."""
    from irisflow.local.broker.embedded import embedded_cluster

    settings = _with_brokers(ctx, brokers)
    _require_embedded(settings)
    status = embedded_cluster(settings).start_broker(number)
    typer.echo(f"broker {number} running at {status.bootstrap} (pid {status.pid})")


@app.command("topics")
def kafka_topics(ctx: typer.Context) -> None:
    """Create irisflow's topics with the configured partitions, replication and configs
    (idempotent)."""
    from irisflow.kafka.admin import ensure_topics

    created = asyncio.run(ensure_topics(_settings(ctx).kafka))
    typer.echo("created: " + ", ".join(created) if created else "all topics exist")
