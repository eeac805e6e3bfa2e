"""The embedded Apache Kafka broker: real jars from Maven Central, one KRaft node on 127.0.0.1.

Why not a mock: users judge irisflow on what happens when a process dies, and only a real broker
(group rebalances, committed offsets, compaction) shows that. The jars are resolved once through
the committed ``pom.xml`` into a cache outside git; starting a broker afterwards needs only Java.

About 430 lines, kept whole: one broker's life cycle (jars, configuration, format, start,
readiness, stop) reads best in order in one place.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from irisflow.errors import KafkaRuntimeError
from irisflow.settings import default_min_insync

__all__ = [
    "KAFKA_VERSION",
    "BrokerStatus",
    "EmbeddedKafka",
    "Launch",
    "ensure_kafka_jars",
    "new_cluster_id",
    "port_is_free",
]

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.2"
READY_MARKER = b"Kafka Server started"

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_insync}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_insync}
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=16777216
message.max.bytes={max_message_bytes}
replica.fetch.max.bytes={max_message_bytes}
socket.request.max.bytes=104857600
"""

_CLUSTER_PROPERTIES = """\
default.replication.factor={replicas}
min.insync.replicas={min_insync}
unclean.leader.election.enable=false
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=10000
"""
"""Only in a cluster of several nodes. Topics created by clients (Faust's changelogs) are
replicated like irisflow's own; a broker that stops heartbeating is fenced (and leaves every
ISR) after 6 s instead of 9 s, and a follower that stops fetching leaves the ISR after 10 s
instead of 30 s: ``acks=all`` writes wait for the ISR, so these bound how long a broker
failure stalls them. Kafka's minimums; nothing in the request path is that slow."""

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = INFO
"""

_JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]


def new_cluster_id() -> str:
    """A Kafka-style id (22 url-safe base64 chars) that never starts with '-' (an option flag)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the OS says is free now (tests use it to run brokers side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _java() -> str:
    java = os.environ.get("JAVA") or shutil.which("java")
    if not java:
        raise KafkaRuntimeError(
            "java not found: the embedded Kafka broker needs Java 17+ "
            "(apt-get install openjdk-17-jre-headless), or set IRISFLOW_KAFKA_BOOTSTRAP "
            "to use an existing cluster"
        )
    return java


def ensure_kafka_jars(cache_dir: Path) -> Path:
    """Resolve the broker's classpath once; later calls return the cached folder at once."""
    target = cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaRuntimeError(
            "mvn not found: the first start downloads Kafka's jars from Maven Central with "
            "Maven (apt-get install maven), or set IRISFLOW_KAFKA_BOOTSTRAP to use an existing "
            "cluster"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target.parent))
    with resources.as_file(resources.files("irisflow.local.broker") / "pom.xml") as pom:
        log.info(
            "downloading Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, target
        )
        done = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise KafkaRuntimeError(
            "downloading Kafka's jars with Maven failed (is Maven Central reachable?): "
            + " | ".join(tail)
        )
    (staging / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    node_id: int = 1


@dataclass(frozen=True)
class Launch:
    """A broker process launched and not yet known to be started."""

    process: subprocess.Popen[bytes]
    log_offset: int
    started_at: float


class EmbeddedKafka:
    """One KRaft broker+controller process whose state lives in ``data_dir`` (alone, or one
    node of a :class:`~irisflow.local.broker.cluster.KafkaCluster`).

    The process is started in its own session so that it survives the CLI that started it
    (``irisflow kafka start``) and is stopped through the pid file (``irisflow kafka stop``).
    """

    def __init__(
        self,
        *,
        libs: Path,
        data_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        max_message_bytes: int = 10 * 1024 * 1024,
        node_id: int = 1,
        voters: str | None = None,
        replicas: int = 1,
        cluster_id: str | None = None,
        extra_properties: str = "",
    ) -> None:
        self.libs = libs
        self.data_dir = data_dir.resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.max_message_bytes = max_message_bytes
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{controller_port}"
        """The controller quorum, ``id@host:port`` of every node (all of them vote)."""
        self.replicas = replicas
        """How many nodes the cluster has: Kafka's internal topics are replicated that many
        times (at most 3)."""
        self.cluster_id = cluster_id
        """The id every node of one cluster is formatted with (a new one if ``None``)."""
        self.extra_properties = extra_properties
        """Appended to ``server.properties`` (a later key wins): e.g. a SASL listener."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    def _jvm(self) -> list[str]:
        return [
            _java(),
            "-Xms128m",
            f"-Xmx{self.heap}",
            *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            str(self.libs / "*"),
        ]

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        props = self.data_dir / "server.properties"
        replicas = min(3, self.replicas)
        values = {
            "node_id": self.node_id,
            "voters": self.voters,
            "port": self.port,
            "controller_port": self.controller_port,
            "data_dir": self.data_dir / "logs",
            "max_message_bytes": self.max_message_bytes,
            "replicas": replicas,
            "min_insync": default_min_insync(replicas),
        }
        text = _SERVER_PROPERTIES.format(**values)
        if self.replicas > 1:
            text += _CLUSTER_PROPERTIES.format(**values)
        props.write_text(text + self.extra_properties)
        return props

    def formatted_cluster_id(self) -> str | None:
        """The cluster id this node's storage was formatted with, if it was."""
        try:
            text = (self.data_dir / "logs" / "meta.properties").read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None

    def _format(self, props: Path) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or new_cluster_id()
        done = subprocess.run(
            [
                *self._jvm(),
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise KafkaRuntimeError(
                f"formatting the broker's storage in {self.data_dir} failed: "
                + (done.stderr or done.stdout).strip().splitlines()[-1:][0]
            )

    def pid(self) -> int | None:
        try:
            pid = int(self._pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap, self.data_dir, self.node_id)

    def start(self, *, timeout: float = 90.0) -> BrokerStatus:
        """Start (or find already running) and wait until the broker says it is started."""
        launched = self.launch()
        if launched is not None:
            self.wait_started(launched, timeout=timeout)
        return self.status()

    def launch(self) -> Launch | None:
        """Start the process without waiting for it (``None`` if it already runs): the nodes of
        a cluster are launched together, since none is ready before a quorum of them runs."""
        if self.pid() is not None:
            return None
        for port in (self.port, self.controller_port):
            if not port_is_free(port):
                raise KafkaRuntimeError(
                    f"port {port} on 127.0.0.1 is taken by another program: stop it, choose other "
                    "ports with IRISFLOW_KAFKA_PORT / IRISFLOW_KAFKA_CONTROLLER_PORT, or point "
                    "IRISFLOW_KAFKA_BOOTSTRAP at the broker that is already running"
                )
        props = self._write_config()
        started_at = time.monotonic()
        self._format(props)
        with self.log_path.open("ab") as out:
            offset = out.tell()
            proc = subprocess.Popen(
                [*self._jvm(), "kafka.Kafka", str(props)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pid_path.write_text(str(proc.pid))
        return Launch(proc, offset, started_at)

    def wait_started(self, launch: Launch, *, timeout: float = 90.0) -> None:
        """Wait until the launched process says it started (it is stopped if it does not)."""
        self._wait_ready(launch.process, launch.log_offset, timeout)
        log.info(
            "Kafka %s broker %d up at %s in %.1fs (data in %s)",
            KAFKA_VERSION,
            self.node_id,
            self.bootstrap,
            time.monotonic() - launch.started_at,
            self.data_dir,
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pid_path.unlink(missing_ok=True)
                raise KafkaRuntimeError(
                    f"the Kafka broker exited with code {proc.returncode} while starting; "
                    f"its log is {self.log_path}: {self._log_tail()}"
                )
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                if READY_MARKER in handle.read():
                    return
            time.sleep(0.1)
        self.stop()
        raise KafkaRuntimeError(
            f"the Kafka broker did not start within {timeout:.0f}s; its log is {self.log_path}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no log)"
        errors = [line for line in lines if "ERROR" in line or "Exception" in line]
        return (errors or lines or ["(empty log)"])[-1][:400]

    def stop(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM (Kafka's clean shutdown hook), then SIGKILL after ``timeout``; returns once
        the process is gone (a start right after finds its ports free)."""
        pid = self.pid()
        if pid is None:
            self._pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):  # it may have just exited
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            log.warning("broker pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
            self.kill()  # and wait until it is gone: its ports are free once stop returns
        self._pid_path.unlink(missing_ok=True)
        return True

    def kill(self, *, timeout: float = 30.0) -> bool:
        """SIGKILL, as a crash would: no clean shutdown, no leadership handed over."""
        pid = self.pid()
        if pid is None:
            self._pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pid_path.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
