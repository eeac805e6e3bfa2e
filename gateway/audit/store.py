"""The audit store: one row per request id, in SQLite by default or any SQLAlchemy database.

Every write is an upsert keyed by ``request_id`` that sets only the columns its topic knows
(the request its features, the prediction its label, the feedback the true label), so records
may arrive in any order, twice (at-least-once delivery), or from two gateways sharing one
database, and still leave one complete row. SQLAlchemy 2 core, no ORM: the same statements run
on SQLite and PostgreSQL (``INSERT … ON CONFLICT``); change ``gateway.audit_url`` to switch.
Calls are blocking: the gateway runs them in a worker thread.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import orjson
from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    event,
    func,
    make_url,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from gateway.audit.records import AuditRecord, DriftAlarm
from gateway.audit.tables import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    REQUEST_COLUMNS,
    drift_events,
    hops,
    instances_of,
    metadata,
    records,
    to_record,
)
from irisflow.errors import ConfigError, IrisflowError

__all__ = ["AuditBatch", "AuditStore", "AuditUnavailable", "audit_url"]

T = TypeVar("T")
P = ParamSpec("P")


class AuditUnavailable(IrisflowError):
    """The audit database did not answer (down, unreachable, out of connections)."""


def _reading(method: Callable[P, T]) -> Callable[P, T]:
    """A lookup whose database is unreachable raises :class:`AuditUnavailable` (HTTP 503, a
    condition that passes) instead of SQLAlchemy's error (a 500, which says "bug")."""

    @functools.wraps(method)
    def read(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            store = args[0]
            where = getattr(store, "url", "the audit database")
            raise AuditUnavailable(
                f"the audit database {where} did not answer ({type(exc.orig).__name__}); "
                "predictions are still served, retry the audit later"
            ) from exc

    return read


log = logging.getLogger(__name__)


def audit_url(configured: str | None, home: Path) -> str:
    """The configured URL, or a SQLite file in the irisflow home folder."""
    return configured or f"sqlite:///{home / 'audit.db'}"


@dataclass
class AuditBatch:
    """Rows decoded from one poll of the topics, written in one transaction."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    hops: list[dict[str, Any]] = field(default_factory=list)
    """Hop stamps: ``request_id`` and whichever of ``trace_id`` and the hops a source knows."""

    def __len__(self) -> int:
        return len(self.requests) + len(self.predictions) + len(self.feedback) + len(self.drift)


def _dumps(value: Any) -> str:
    """JSON columns written by orjson: a 1,000-instance batch's features and answers are
    ~100 KB of JSON each, which the standard library takes ten times longer to write."""
    return orjson.dumps(value).decode()


def _loads(text: str | bytes) -> Any:
    """JSON columns read by orjson; rows written before it (``NaN`` was possible then) by the
    standard library."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the feed's writes
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _last_per_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PostgreSQL refuses to touch one row twice in a statement: keep the last per id."""
    return list({row["request_id"]: row for row in rows}.values())


#: SQLSTATEs of a transaction PostgreSQL aborted only to let a concurrent one through.
_ABORTED_FOR_ANOTHER = {"40P01", "40001"}  # deadlock detected, serialization failure
_WRITE_ATTEMPTS = 5


def _create_tables(engine: Engine) -> None:
    """Create what is missing, also when several gateways start at once on a new database.

    Each finds no tables and creates them; all but the first then fail (PostgreSQL: a
    duplicate type, once the first has committed; SQLite: "table already exists"), and a
    gateway exits when its audit cannot be opened. So a loser looks again, and ``create_all``
    creates only what is still missing. SQLite commits each table on its own, so every failure
    means one more table exists: one attempt per table, and one more, always suffice.
    """
    attempts = len(metadata.tables) + 1
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            return
        except SQLAlchemyError:
            if attempt == attempts:
                raise


def _aborted_for_another(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _ABORTED_FOR_ANOTHER


def _without_nul(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose texts hold no U+0000, which PostgreSQL's text cannot store (the schemas allow
    it in a name or an error): U+FFFD instead, so the row is kept rather than refused. JSON
    columns (dicts, lists) need nothing: their NUL travels escaped as ``\\u0000``."""

    def clean(row: dict[str, Any]) -> dict[str, Any]:
        if not any(isinstance(v, str) and "\x00" in v for v in row.values()):
            return row
        return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in row.items()}

    return [clean(row) for row in rows]


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


class AuditStore:
    """Upserts from the feed; lookups by request id and by time for the API and dashboard."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite" and parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url,
                connect_args={"timeout": 30} if parsed.get_backend_name() == "sqlite" else {},
                pool_pre_ping=True,
                json_serializer=_dumps,
                json_deserializer=_loads,
            )
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            _create_tables(self.engine)
        except (SQLAlchemyError, ValueError, OSError) as exc:
            raise ConfigError(f"the audit store at {url!r} cannot be opened: {exc}") from exc
        self.url = parsed.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def _upsert(
        self,
        conn: Connection,
        rows: list[dict[str, Any]],
        owned: tuple[str, ...],
        table: Table = records,
    ) -> None:
        if not rows:
            return
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table)
        update = {name: stmt.excluded[name] for name in owned}
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["request_id"], set_=update),
            _last_per_id(rows),
        )

    def write(self, batch: AuditBatch) -> None:
        """Apply one batch in one transaction (all of it or none, then offsets are committed).

        Gateways sharing a PostgreSQL database write the same rows (one stores a request,
        another its answer or hop stamps), and two transactions locking rows in opposite orders
        deadlock: PostgreSQL aborts one. That one is written again here, a few times, rather
        than raised to the feed, which would restart and re-read its partitions.
        """
        if self.engine.dialect.name == "postgresql":
            batch = AuditBatch(
                requests=_without_nul(batch.requests),
                predictions=_without_nul(batch.predictions),
                feedback=_without_nul(batch.feedback),
                drift=_without_nul(batch.drift),
                hops=batch.hops,  # ids and trace ids are validated: no NUL there
            )
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                self._write_once(batch)
                return
            except OperationalError as exc:
                if attempt == _WRITE_ATTEMPTS or not _aborted_for_another(exc):
                    raise
                log.info("audit: a write was aborted for another (%s); writing it again", exc.orig)

    def _write_once(self, batch: AuditBatch) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, batch.requests, REQUEST_COLUMNS)
            self._upsert(conn, batch.predictions, PREDICTION_COLUMNS)
            self._upsert(conn, batch.feedback, FEEDBACK_COLUMNS)
            by_source: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in batch.hops:  # one statement per set of columns: each source sets its own
                by_source.setdefault(tuple(sorted(set(row) - {"request_id"})), []).append(row)
            for owned, rows in by_source.items():
                self._upsert(conn, rows, owned, hops)
            if batch.drift:
                dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
                stmt = dialect.insert(drift_events).on_conflict_do_nothing()
                conn.execute(stmt, batch.drift)

    @_reading
    def get(self, request_id: str) -> AuditRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(records).where(records.c.request_id == request_id)).first()
            if row is None:
                return None
            hop_row = conn.execute(select(hops).where(hops.c.request_id == request_id)).first()
        return to_record(row, hop_row)

    @_reading
    def page(
        self,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> list[AuditRecord]:
        query = select(records)
        if since is not None:
            query = query.where(records.c.at >= since)
        if until is not None:
            query = query.where(records.c.at < until)
        key = records.c.at.asc() if order == "asc" else records.c.at.desc()
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(key, records.c.request_id).limit(limit)).all()
        return [to_record(row) for row in rows]

    @_reading
    def window(self, since: float, *, limit: int = 20000) -> Sequence[Any]:
        """Recent rows for the dashboard's counts, newest first, at most ``limit``.

        No features here: a row of a 1,000-instance batch carries ~100 KB of them, and
        ``limit`` such rows would be gigabytes. :meth:`recent_inputs` reads them on a budget.
        """
        c, h = records.c, hops.c
        # what the client waited where the gateway's stamps are known; else the worker's figure
        client_visible = h.gateway_answered - h.gateway_received
        query = (
            select(
                c.kind,
                c.at,
                c.n_instances,
                c.label,
                func.coalesce(client_visible, c.latency_seconds).label("latency_seconds"),
                c.scored_at,
                c.error,
                c.true_label,
                c.labeled_at,
            )
            .select_from(records.outerjoin(hops, h.request_id == c.request_id))
            .where(or_(c.at >= since, c.scored_at >= since, c.labeled_at >= since))
            .order_by(c.at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    @_reading
    def recent_inputs(
        self, since: float, *, max_instances: int = 20000
    ) -> Sequence[tuple[float, Any]]:
        """``(at, features)`` of the newest requests since ``since``, as many as fit in
        ``max_instances`` instances in all (the database adds them up, newest first), so the
        dashboard's drift picture costs a bounded read whatever the batches' sizes."""
        c = records.c
        running = (
            select(
                c.request_id,
                func.sum(c.n_instances)
                .over(order_by=(c.at.desc(), c.request_id))
                .label("instances"),
            )
            .where(c.at >= since, c.features.is_not(None))
            .subquery()
        )
        # the features column stays out of the sort: only the rows within budget are read
        query = (
            select(c.at, c.features)
            .join(running, running.c.request_id == c.request_id)
            .where(running.c.instances <= max_instances)
            .order_by(c.at.desc())
        )
        with self.engine.connect() as conn:
            return [(row.at, instances_of(row.features)) for row in conn.execute(query)]

    @_reading
    def drift_alarms(self, since: float, *, limit: int = 50) -> list[DriftAlarm]:
        c = drift_events.c
        query = (
            select(drift_events)
            .where(c.detected_at >= since)
            .order_by(c.detected_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        # rows stored before the feed refused NaN and Infinity must not break the dashboard
        finite = (r for r in rows if _finite(r.statistic, r.threshold, r.detected_at))
        return [DriftAlarm.model_validate(row, from_attributes=True) for row in finite]
