"""A real, throwaway PostgreSQL server for the audit tests, and the audit's two backends.

README promises the audit on PostgreSQL as well as on SQLite, so the audit's tests run on both
(:func:`audit_db`, ids ``sqlite`` and ``postgresql``), each test on a database of its own so the
random order cannot matter. The server is Debian's ``postgresql`` package (``make test`` installs
it): ``initdb`` and ``pg_ctl`` on a free port, data and socket in a temporary folder, trust
authentication on 127.0.0.1 only, no fsync (nothing here must survive a crash), stopped at the
end of the session. It starts in about two seconds, only when a test asks for it. Without the
binaries, a PostgreSQL container is used when a Docker engine answers; with neither, the tests
that need it fail saying what to install (no skips: an untested backend must not pass quietly).

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the ``postgres``
user the package creates (``nobody`` if there is none), and owns its temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from irisflow.local.broker.runtime import free_port

__all__ = [
    "AuditDatabases",
    "PostgresServer",
    "RunningServer",
    "audit_db",
    "postgres_bindir",
    "postgresql_server",
]

SUPERUSER = "postgres"
INSTALL_HINT = (
    "PostgreSQL is needed by the audit tests: install Debian's `postgresql` package "
    "(`make test` does: `apt-get install postgresql`) or start a Docker engine"
)


def postgres_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: Debian keeps them off PATH in
    ``/usr/lib/postgresql/<version>/bin`` (newest version first), other systems on PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _run_as() -> str | None:
    """The user the server runs as when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        return "nobody"
    return SUPERUSER


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``folder``, listening on 127.0.0.1:``port``."""

    bindir: Path
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def _run(self, tool: str, *args: str) -> None:
        user = _run_as()
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
            cwd=self.folder,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}\n{log}")

    def start(self) -> None:
        user = _run_as()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.folder}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c shared_buffers=32MB",
                "-c max_connections=200",
            ]
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` as the gateway takes it (``IRISFLOW_AUDIT_URL``)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


@dataclass
class RunningServer:
    """A running server: the URL of its maintenance database, and how to make a new one."""

    admin_url: str

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg
        from sqlalchemy import make_url

        url = make_url(self.admin_url)
        name = f"audit_{uuid.uuid4().hex[:12]}"
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.set(database=name).render_as_string(hide_password=False)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[RunningServer]:
    """A PostgreSQL server for the session, started by the first test that needs it."""
    bindir = postgres_bindir()
    if bindir is None:
        if not _docker_answers():
            pytest.fail(INSTALL_HINT)
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield RunningServer(container.get_connection_url())
        return
    folder = Path(tempfile.mkdtemp(prefix="irisflow-test-postgres-"))
    server = PostgresServer(bindir, folder, free_port())
    try:
        server.start()
        yield RunningServer(server.url())
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class AuditDatabases:
    """Where a test's audit stores live: ``backend`` and a fresh, empty database per ``new()``."""

    backend: str
    new: Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> AuditDatabases:
    """Every audit test once on SQLite (a new file per database) and once on PostgreSQL (a new
    database on the session's server per database)."""
    if request.param == "sqlite":
        made = iter(range(1_000_000))
        return AuditDatabases("sqlite", lambda: f"sqlite:///{tmp_path / f'audit-{next(made)}.db'}")
    server: RunningServer = request.getfixturevalue("postgresql_server")
    return AuditDatabases("postgresql", server.create_database)
