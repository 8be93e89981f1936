"""The local test stack: Apache Kafka (KRaft), MariaDB and an S3 server (moto), on loopback.

Run it through the ``scripts/stack`` wrapper (it uses the virtualenv's Python: ``make venv``
first); ``scripts/stack --help`` lists the commands. What this script knows is the project's:
how each server is prepared and configured, which ports, ``.stack/env``, holds. Starting,
waiting and stopping is done by libraries: mirakuru's :class:`~mirakuru.Executor` starts a
server in its own session, polls its readiness check with a start timeout, and raises
``ProcessExitedWithError`` / ``TimeoutExpired`` (after killing it); psutil finds and stops the
servers in later runs. Readiness is asked with the project's own clients (aiokafka's admin
client, pymysql, boto3), never a hand-written protocol.

Rules this script keeps:

1. Everything lives under ``STACK_DIR`` (default ``.stack/`` in the repository): one folder per
   component with its data, rendered configuration and log.
2. A process is ours only if its environment carries mirakuru's marker variable
   (``mirakuru_uuid``) set to the component's marker, ``tradepipe-stack <name> <key>`` where
   the key spells a hash of the component's folder in letters (mirakuru's exit hook in any
   interpreter kills processes whose marker *contains* that interpreter's pid: no digits).
   mirakuru marks every process it starts with that variable (children inherit it); we fix its
   value per component instead of per interpreter, because the servers outlive the ``up`` that
   started them: a later ``down``, ``stop`` or ``status`` finds them by it, and signals nothing
   else. (mirakuru's own exit hook, which kills what this interpreter started, is therefore
   unregistered, and the started executor lets go of its process.)
3. A component is "up" only once it answered a real request: aiokafka's admin client lists the
   broker and finds a group coordinator (so ``__consumer_offsets`` exists and consumer groups
   in tests join at once), ``SELECT 1`` as the test user, an S3 ``ListBuckets``.
4. ``stop`` keeps the data and ``start`` reuses it with the same port, so fault tests can kill a
   component and bring it back while the others keep running.
5. A component whose ``TRADEPIPE_TEST_*`` variable is set is external: never started or stopped,
   only checked for reachability (TCP) and copied into ``.stack/env``.
6. Holds: ``up --hold TOKEN --hold-pid PID`` records who needs the stack; ``down --release TOKEN``
   stops it only when no other live hold (or a manual ``up``) remains, so two ``make test`` runs
   in one tree do not pull the stack from under each other. A hold whose pid is gone is dropped.
"""

# ruff: noqa: S603, S607  -- starting the components as subprocesses is this script's job

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

try:
    import psutil
    from mirakuru import Executor, ProcessExitedWithError, SimpleExecutor, TimeoutExpired
    from mirakuru.base import ENV_UUID, cleanup_subprocesses
except ImportError as exc:  # not the virtualenv's Python
    sys.exit(f"stack: error: {exc}: run `make venv` first (scripts/stack uses .venv/bin/python)")

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

# Rule 2: the servers must outlive this process; mirakuru would SIGKILL them at exit.
atexit.unregister(cleanup_subprocesses)
# The clients log connection failures while a server starts; the probe reports them instead.
for _name in ("aiokafka", "botocore"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: scripts/ is on the path, the root is not
    sys.path.insert(0, str(ROOT))
from scripts.kafka_config import render as render_kafka_config  # noqa: E402 (needs the root)

STACK_DIR = Path(os.environ.get("STACK_DIR", ROOT / ".stack")).resolve()
HOST = "127.0.0.1"

KAFKA_PORT = int(os.environ.get("STACK_KAFKA_PORT", "39092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("STACK_KAFKA_CONTROLLER_PORT", "39093"))
MYSQL_PORT = int(os.environ.get("STACK_MYSQL_PORT", "33306"))
S3_PORT = int(os.environ.get("STACK_S3_PORT", "35555"))
KAFKA_HEAP = os.environ.get("STACK_KAFKA_HEAP", "512m")
TIMEOUT = float(os.environ.get("STACK_TIMEOUT", "180"))

MYSQL_DB = "tradepipe_test"
MYSQL_USER = "tradepipe"
MYSQL_PASSWORD = "tradepipe"  # noqa: S105 -- throwaway loopback test instance
S3_BUCKET = "tradepipe-test"

COMPONENTS = ("kafka", "mysql", "s3")
ENV_VARS = {
    "kafka": ("TRADEPIPE_TEST_KAFKA",),
    "mysql": ("TRADEPIPE_TEST_MYSQL_URL",),
    "s3": ("TRADEPIPE_TEST_S3_ENDPOINT", "TRADEPIPE_TEST_S3_BUCKET"),
}


class StackError(Exception):
    """A component could not be started, reached or stopped; the message says why."""


def log(msg: str) -> None:
    print(f"stack: {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# processes


def _alive(proc: psutil.Process) -> bool:
    """True while ``proc`` runs; a zombie counts as dead (its parent may never reap it)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        return _alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


class Server(Executor):
    """One component's server as mirakuru runs it: its own session (mirakuru's ``setsid``),
    output appended to the component's log, marked with the component's marker (rule 2), and
    started once ``probe`` answers (rule 3) within ``STACK_TIMEOUT`` seconds."""

    def __init__(self, comp: Component, out: IO[bytes]) -> None:
        super().__init__(
            comp.command(), cwd=str(comp.dir), timeout=TIMEOUT, sleep=0.2,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._uuid = comp.marker  # the value of mirakuru's ENV_UUID variable for this process
        self.comp = comp
        self.why: str | None = "not probed"
        self.launched = time.monotonic()

    def pre_start_check(self) -> bool:
        """A port already taken means someone else's server (rule 2: not ours)."""
        return any(_port_open(port) for port in (self.comp.port, *self.comp.extra_ports))

    def after_start_check(self) -> bool:
        if self.process is not None and self.process.poll() == 0:  # mirakuru stops on exit != 0
            raise ProcessExitedWithError(self, 0)
        self.why = self.comp.probe()
        return self.why is None

    def detach(self) -> None:
        """Let go of the started process, so that neither ``__del__`` nor an exit kills it."""
        self.process = None


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


@dataclass
class Component:
    """One managed server: how to prepare, start, probe and identify it."""

    name: str
    port: int
    prepare: Callable[[], None]
    command: Callable[[], list[str]]
    probe: Callable[[], str | None]  # None when ready, else why not yet
    after_ready: Callable[[], None] = lambda: None
    extra_ports: tuple[int, ...] = ()

    @property
    def dir(self) -> Path:
        return STACK_DIR / self.name

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def marker(self) -> str:
        """The value of ``mirakuru_uuid`` in the environment of every process we start for it
        (rule 2: one per folder, without digits)."""
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:20]
        return f"tradepipe-stack {self.name} {digest.translate(_LETTERS)}"

    def processes(self) -> list[psutil.Process]:
        """Our running processes (rule 2): those whose environment carries our marker.
        Processes whose environment we may not read (other users') are not ours."""
        found = []
        for proc in psutil.process_iter(["environ"], ad_value=None):
            environ = proc.info["environ"]
            if environ and environ.get(ENV_UUID) == self.marker and _alive(proc):
                found.append(proc)
        return found

    def pid(self) -> int | None:
        """The server's main process (the first one started with our marker), or None."""
        first = min(self.processes(), key=lambda p: (p.create_time(), p.pid), default=None)
        return None if first is None else first.pid

    def start(self) -> None:
        """Start (or keep) the server and wait until it answers."""
        self.finish(self.launch())

    def launch(self) -> Server | None:
        """Prepare and start the server without waiting for it (None if it already runs):
        ``up`` launches every component, then waits for each, so they boot side by side."""
        if self.pid() is not None:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_file.open("ab") as out:  # the child has its own descriptor
            server = Server(self, out)
            if server.pre_start_check():  # what mirakuru's Executor.start checks first
                ports = [p for p in (self.port, *self.extra_ports) if _port_open(p)]
                raise StackError(
                    f"{self.name}: port {', '.join(map(str, ports))} is already in use by a "
                    "process this script did not start; stop it or choose another port "
                    "(see docs/testing.md, Local stack)"
                )
            shown = " ".join(a if len(a) < 300 else a[:60] + "..." for a in server.command_parts)
            out.write(f"\n=== {time.strftime('%F %T')} {shown}\n".encode())
            out.flush()
            SimpleExecutor.start(server)  # Popen in its own session; the start timeout begins
        return server

    def finish(self, server: Server | None) -> None:
        """Wait until the launched server (or the one already running) answers."""
        if server is None:
            if (pid := self.pid()) is None:
                raise StackError(
                    f"{self.name}: its running server exited; last log lines:\n"
                    + _tail(self.log_file)
                )
            self._wait_running(pid)
            self.after_ready()
            return
        try:
            server.wait_for(server.check_subprocess)  # the rest of Executor.start
        except ProcessExitedWithError as exc:
            raise StackError(
                f"{self.name}: the server exited with status {exc.exit_code} before it was "
                f"ready; last log lines:\n{_tail(self.log_file)}"
            ) from None
        except TimeoutExpired:  # mirakuru has killed it
            raise StackError(
                f"{self.name}: not ready after {TIMEOUT:.0f}s ({server.why}), killed; "
                f"last log lines:\n{_tail(self.log_file)}"
            ) from None
        pid = server.process.pid if server.process is not None else 0
        server.detach()
        log(
            f"{self.name}: started pid {pid} on {HOST}:{self.port}, ready after "
            f"{time.monotonic() - server.launched:.1f}s, log {self.log_file}"
        )
        self.after_ready()

    def _wait_running(self, pid: int) -> None:
        """A server from an earlier ``up`` (maybe still starting): wait until it answers."""
        deadline = time.monotonic() + TIMEOUT
        while (why := self.probe()) is not None:
            if not _pid_alive(pid):
                raise StackError(
                    f"{self.name}: process {pid} exited before it was ready; last log lines:\n"
                    + _tail(self.log_file)
                )
            if time.monotonic() > deadline:
                raise StackError(f"{self.name}: pid {pid} not ready after {TIMEOUT:.0f}s ({why})")
            time.sleep(0.3)

    def stop(self, *, kill: bool = False, grace: float = 60.0) -> bool:
        """Stop our processes (SIGTERM, SIGKILL after ``grace`` s); False if none was running."""
        procs = self.processes()
        if not procs:
            return False
        pid = self.pid()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        if alive := _wait_gone(procs, grace):
            log(f"{self.name}: pid {pid} ignored SIGTERM for {grace:.0f}s, killing")
            for proc in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            if alive := _wait_gone(alive, 10):
                raise StackError(f"{self.name}: {[p.pid for p in alive]} survived SIGKILL")
        deadline = time.monotonic() + 10
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        log(f"{self.name}: stopped pid {pid}" + (" (SIGKILL)" if kill else ""))
        return True


def _wait_gone(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Those of ``procs`` still alive after up to ``seconds`` (zombies count as gone)."""
    deadline = time.monotonic() + seconds
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        _, still = psutil.wait_procs(alive, timeout=0.1)
        alive = [p for p in still if _alive(p)]
    return alive


# --------------------------------------------------------------------------------------------
# Kafka


KAFKA_POM = ROOT / "stack" / "kafka" / "pom.xml"


def kafka_classpath() -> str:
    """The broker's classpath, resolved by Maven from stack/kafka/pom.xml and cached."""
    key = hashlib.sha256(
        KAFKA_POM.read_bytes() + os.environ.get("MAVEN_OPTS", "").encode()
    ).hexdigest()[:16]
    cache = STACK_DIR / "cache" / f"kafka-classpath-{key}.txt"
    if cache.exists():
        cp = cache.read_text().strip()
        if cp and all(Path(jar).exists() for jar in cp.split(":")):
            return cp
    if shutil.which("mvn") is None:
        raise StackError(
            "kafka: Maven (mvn) is needed to resolve the Kafka jars: apt-get install maven"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    log("kafka: resolving jars with Maven (first run downloads ~80 MB into ~/.m2)")
    tmp = cache.with_suffix(".tmp")
    proc = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(KAFKA_POM), "dependency:build-classpath",
         f"-Dmdep.outputFile={tmp}", "-Dmdep.includeScope=runtime"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise StackError(f"kafka: mvn failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    tmp.replace(cache)
    return cache.read_text().strip()


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise StackError("kafka: java (17+) not found: apt-get install openjdk-17-jre-headless")
    return java


def _kafka_jvm() -> list[str]:
    return [
        _java(), f"-Xmx{KAFKA_HEAP}", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={ROOT / 'stack' / 'kafka' / 'log4j2.xml'}",
        f"-Dtradepipe.stack={STACK_DIR / 'kafka'}",
        "-cp", kafka_classpath(),
    ]  # fmt: skip


def _kafka_cluster_id() -> str:
    while True:  # Kafka's Uuid.randomUuid: url-safe base64 of 16 bytes, never starting with "-"
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def kafka_prepare() -> None:
    kdir = STACK_DIR / "kafka"
    data = kdir / "data"
    props = kdir / "server.properties"
    # the broker settings the EC2 host runs too, with the test role's values (roles.toml)
    props.write_text(
        render_kafka_config(
            "test",
            {"PORT": KAFKA_PORT, "CONTROLLER_PORT": KAFKA_CONTROLLER_PORT, "LOG_DIR": data},
        )
    )
    if (data / "meta.properties").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    cmd = [*_kafka_jvm(), "kafka.tools.StorageTool", "format", "--standalone",
           "-t", _kafka_cluster_id(), "-c", str(props)]  # fmt: skip
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise StackError(f"kafka: storage format failed:\n{proc.stdout}{proc.stderr}")
    log(f"kafka: formatted {data}")


def kafka_command() -> list[str]:
    return [*_kafka_jvm(), "kafka.Kafka", str(STACK_DIR / "kafka" / "server.properties")]


async def _kafka_admin_call(call: Callable[[AIOKafkaAdminClient], Any]) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=f"{HOST}:{KAFKA_PORT}", client_id="tradepipe-stack",
        request_timeout_ms=5000,
    )  # fmt: skip
    try:
        await admin.start()
        return await call(admin)
    finally:
        await admin.close()


def kafka_admin(call: Callable[[AIOKafkaAdminClient], Any]) -> Any:
    """``await call(admin)`` on a fresh aiokafka admin client; KafkaError/OSError pass up."""
    return asyncio.run(_kafka_admin_call(call))


async def _kafka_ready(admin: AIOKafkaAdminClient) -> str | None:
    brokers = (await admin.describe_cluster()).get("brokers") or []
    if not brokers:
        return "metadata lists no broker yet"
    # The broker creates __consumer_offsets on the first such request: once it answers,
    # consumer groups in tests join without a retry.
    await admin.find_coordinator("tradepipe-stack")
    return None


def kafka_probe() -> str | None:
    from aiokafka.errors import KafkaError

    try:
        why: str | None = kafka_admin(_kafka_ready)
    except (KafkaError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return why


def kafka_topics() -> list[str]:
    async def topics(admin: AIOKafkaAdminClient) -> list[str]:
        return sorted(t for t in await admin.list_topics() if not t.startswith("__"))

    names: list[str] = kafka_admin(topics)
    return names


# --------------------------------------------------------------------------------------------
# MariaDB


def _mysql_socket() -> Path:
    sock = STACK_DIR / "mysql" / "mysqld.sock"
    if len(str(sock)) < 100:  # AF_UNIX path limit
        return sock
    digest = hashlib.sha256(str(STACK_DIR).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tradepipe-stack-{digest}.sock"


def _mariadbd() -> str:
    for name in ("mariadbd", "/usr/sbin/mariadbd"):
        if found := shutil.which(name):
            return found
    if os.geteuid() != 0:
        raise StackError("mysql: mariadbd not found: sudo apt-get install mariadb-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "mariadb-server"]
    log("mysql: installing mariadb-server with apt-get")
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL, check=False)
        subprocess.run(install, env=env, stdin=subprocess.DEVNULL, check=True)
    for name in ("mariadbd", "/usr/sbin/mariadbd"):
        if found := shutil.which(name):
            return found
    raise StackError("mysql: mariadb-server installed but mariadbd is still not found")


def mysql_prepare() -> None:
    mdir = STACK_DIR / "mysql"
    data = mdir / "data"
    (mdir / "tmp").mkdir(parents=True, exist_ok=True)
    init = mdir / "init.sql"
    init.write_text(
        # Runs at every start, before connections are accepted; each statement is idempotent.
        "DELETE FROM mysql.global_priv WHERE User = '';\n"
        "FLUSH PRIVILEGES;\n"
        f"CREATE DATABASE IF NOT EXISTS {MYSQL_DB};\n"
        f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'%' IDENTIFIED BY '{MYSQL_PASSWORD}';\n"
        f"CREATE USER IF NOT EXISTS '{MYSQL_USER}'@'localhost' IDENTIFIED BY '{MYSQL_PASSWORD}';\n"
        # All rights on every database (no GRANT OPTION): tests create throwaway databases.
        f"GRANT ALL PRIVILEGES ON *.* TO '{MYSQL_USER}'@'%';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{MYSQL_USER}'@'localhost';\n"
    )
    _mariadbd()
    if (data / "mysql").is_dir():
        return
    shutil.rmtree(data, ignore_errors=True)
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if installer is None:
        raise StackError("mysql: mariadb-install-db not found (package mariadb-server)")
    cmd = [installer, "--no-defaults", f"--datadir={data}", "--skip-test-db",
           "--skip-name-resolve", "--auth-root-authentication-method=socket"]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--user=root")
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise StackError(f"mysql: mariadb-install-db failed:\n{proc.stdout}{proc.stderr}")
    log(f"mysql: initialised {data}")


def mysql_command() -> list[str]:
    mdir = STACK_DIR / "mysql"
    cmd = [
        _mariadbd(), "--no-defaults",
        f"--datadir={mdir / 'data'}", f"--tmpdir={mdir / 'tmp'}",
        f"--socket={_mysql_socket()}", f"--pid-file={mdir / 'mariadbd.pid'}",
        f"--port={MYSQL_PORT}", f"--bind-address={HOST}", "--skip-name-resolve",
        f"--init-file={mdir / 'init.sql'}",
        "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
        "--default-time-zone=+00:00",
        "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=64M",
        # A process kill (what fault tests do) loses nothing at 2; only an OS crash could.
        "--innodb-flush-log-at-trx-commit=2",
        "--max-connections=300",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--user=root")
    return cmd


def mysql_probe() -> str | None:
    import pymysql

    try:
        conn = pymysql.connect(
            host=HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD,
            database=MYSQL_DB, connect_timeout=3, read_timeout=10,
        )  # fmt: skip
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            row = cur.fetchone()
    except pymysql.MySQLError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if row == (1,) else f"SELECT 1 answered {row!r}"


# --------------------------------------------------------------------------------------------
# S3 (moto)


def _moto_server() -> str:
    candidates = [
        os.environ.get("STACK_MOTO_SERVER", ""),
        str(ROOT / ".venv" / "bin" / "moto_server"),
    ]
    for cand in candidates:
        if cand and os.access(cand, os.X_OK):
            return cand
    if found := shutil.which("moto_server"):
        return found
    raise StackError("s3: moto_server not found: run `make venv` (installs moto[server])")


def s3_command() -> list[str]:
    server = _moto_server()
    python = Path(server).parent / "python"
    prefix = [str(python), server] if python.exists() else [server]
    return [*prefix, "-H", HOST, "-p", str(S3_PORT)]


@functools.cache
def _s3() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=f"http://{HOST}:{S3_PORT}", region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",  # noqa: S106 -- moto's
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )  # fmt: skip


def s3_probe() -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _s3().list_buckets()
    except (BotoCoreError, ClientError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def s3_after_ready() -> None:
    from botocore.exceptions import ClientError

    try:
        _s3().head_bucket(Bucket=S3_BUCKET)
    except ClientError:
        _s3().create_bucket(Bucket=S3_BUCKET)
        log(f"s3: created bucket {S3_BUCKET}")


STACK: dict[str, Component] = {
    "kafka": Component(
        "kafka", KAFKA_PORT, kafka_prepare, kafka_command, kafka_probe,
        extra_ports=(KAFKA_CONTROLLER_PORT,),
    ),
    "mysql": Component("mysql", MYSQL_PORT, mysql_prepare, mysql_command, mysql_probe),
    "s3": Component("s3", S3_PORT, lambda: None, s3_command, s3_probe, s3_after_ready),
}  # fmt: skip


def local_env(name: str) -> dict[str, str]:
    if name == "kafka":
        return {"TRADEPIPE_TEST_KAFKA": f"{HOST}:{KAFKA_PORT}"}
    if name == "mysql":
        url = f"mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{HOST}:{MYSQL_PORT}/{MYSQL_DB}"
        return {"TRADEPIPE_TEST_MYSQL_URL": url}
    return {
        "TRADEPIPE_TEST_S3_ENDPOINT": f"http://{HOST}:{S3_PORT}",
        "TRADEPIPE_TEST_S3_BUCKET": S3_BUCKET,
    }


def external(name: str) -> bool:
    """Rule 5: the user points tests at their own server by setting its first variable (to
    anything but this stack's own address, which a shell that sourced .stack/env carries)."""
    var = ENV_VARS[name][0]
    return os.environ.get(var, "") not in ("", local_env(name)[var])


def external_reachable(value: str) -> bool:
    """TCP check of the first server in a bootstrap list or URL (tests check more)."""
    first = value.split(",")[0]
    parts = urlsplit(first if "://" in first else f"tcp://{first}")
    default = {"http": 80, "https": 443, "mysql": 3306}.get(parts.scheme, 9092)
    try:
        with socket.create_connection((parts.hostname or HOST, parts.port or default), timeout=3):
            return True
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# holds, env file, lock


HOLDS = STACK_DIR / "holds"
ENV_FILE = STACK_DIR / "env"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    with (STACK_DIR / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def live_holds() -> list[str]:
    holds = []
    for path in sorted(HOLDS.glob("*")) if HOLDS.is_dir() else []:
        owner = path.read_text().strip()
        if owner == "manual" or (owner.isdigit() and _pid_alive(int(owner))):
            holds.append(f"{path.name} ({owner})")
        else:
            path.unlink(missing_ok=True)
    return holds


def write_env() -> None:
    lines = ["# written by scripts/stack; `source .stack/env` or let tests/conftest.py read it"]
    for name in COMPONENTS:
        if external(name):
            for var in ENV_VARS[name]:
                if os.environ.get(var):
                    lines.append(f"export {var}={os.environ[var]}  # external")
        elif STACK[name].pid() is not None:
            lines += [f"export {k}={v}" for k, v in local_env(name).items()]
    ENV_FILE.write_text("\n".join(lines) + "\n")


def _selected(names: list[str]) -> list[str]:
    """The components named, else those in STACK_COMPONENTS, else all of them."""
    chosen = (
        names or os.environ.get("STACK_COMPONENTS", " ".join(COMPONENTS)).replace(",", " ").split()
    )
    for name in chosen:
        if name not in COMPONENTS:
            raise StackError(f"unknown component {name!r} (choose from {', '.join(COMPONENTS)})")
    return chosen


# --------------------------------------------------------------------------------------------
# commands


def cmd_up(args: argparse.Namespace) -> int:
    names = _selected(args.components)
    with locked():
        HOLDS.mkdir(parents=True, exist_ok=True)
        owner = str(args.hold_pid or os.getppid()) if args.hold else "manual"
        (HOLDS / (args.hold or "manual")).write_text(owner + "\n")
        launched: list[tuple[Component, Server | None]] = []
        for name in names:
            comp = STACK[name]
            if external(name):
                var = ENV_VARS[name][0]
                state = "reachable" if external_reachable(os.environ[var]) else "NOT REACHABLE"
                log(f"{name}: external ({var}={os.environ[var]}), not started; {state}")
                continue
            if args.fresh and comp.pid() is None:
                for sub in ("data",):
                    shutil.rmtree(comp.dir / sub, ignore_errors=True)
            launched.append((comp, comp.launch()))
        for comp, server in launched:
            comp.finish(server)
        write_env()
    log(f"env: {ENV_FILE}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    names = _selected(args.components) if args.components else list(COMPONENTS)
    with locked():
        if args.release:
            (HOLDS / args.release).unlink(missing_ok=True)
            if others := live_holds():
                log(f"still held by {', '.join(others)}: leaving the stack running")
                return 0
        for name in names:
            if not STACK[name].stop() and not external(name):
                log(f"{name}: not running")
            if args.purge:
                shutil.rmtree(STACK[name].dir, ignore_errors=True)
        if set(names) == set(COMPONENTS):
            shutil.rmtree(HOLDS, ignore_errors=True)
            ENV_FILE.unlink(missing_ok=True)
        else:
            write_env()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    with locked():
        for name in args.components:
            if external(name):
                raise StackError(
                    f"{name} is external ({ENV_VARS[name][0]} is set): not ours to stop"
                )
            if not STACK[name].stop(kill=args.kill):
                log(f"{name}: not running")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    with locked():
        for name in args.components:
            if external(name):
                raise StackError(
                    f"{name} is external ({ENV_VARS[name][0]} is set): not ours to start"
                )
            STACK[name].start()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rc = 0
    for name in _selected(args.components):
        comp = STACK[name]
        if external(name):
            print(f"{name:6} external  {os.environ[ENV_VARS[name][0]]}")
            continue
        pid = comp.pid()
        if pid is None:
            print(f"{name:6} stopped   port {comp.port}")
            rc = 3
            continue
        why = comp.probe()
        state = "ready" if why is None else f"starting ({why})"
        extra = ""
        if name == "kafka" and why is None:
            from aiokafka.errors import KafkaError

            with contextlib.suppress(KafkaError, OSError):
                extra = f"  topics: {', '.join(kafka_topics()) or '-'}"
        print(f"{name:6} {state:9} pid {pid}  {HOST}:{comp.port}  log {comp.log_file}{extra}")
        rc = rc if why is None else 3
    if holds := live_holds():
        print(f"holds: {', '.join(holds)}")
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/stack",
        description="Local Kafka (KRaft), MariaDB and S3 (moto) on 127.0.0.1 for tests. "
        "Data and logs under .stack/. See docs/testing.md, 'Local stack'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    comp: dict[str, Any] = {
        "nargs": "*",
        "metavar": "COMPONENT",
        "help": f"any of {', '.join(COMPONENTS)}",
    }
    up = sub.add_parser(
        "up", help="start (or keep) the components, wait until ready, write .stack/env"
    )
    up.add_argument("components", **comp)
    up.add_argument("--fresh", action="store_true", help="wipe the data of components not running")
    up.add_argument("--hold", metavar="TOKEN", help="record a hold released by `down --release`")
    up.add_argument(
        "--hold-pid", type=int, help="the hold lasts while this pid lives (default: parent)"
    )
    down = sub.add_parser("down", help="stop the components this script started")
    down.add_argument("components", **comp)
    down.add_argument("--release", metavar="TOKEN", help="drop a hold; stop only if none remains")
    down.add_argument("--purge", action="store_true", help="also delete their data")
    stop = sub.add_parser("stop", help="stop components, keeping data and port (fault tests)")
    stop.add_argument("components", nargs="+", choices=COMPONENTS, metavar="COMPONENT")
    stop.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean shutdown")
    start = sub.add_parser("start", help="start stopped components again, same data and port")
    start.add_argument("components", nargs="+", choices=COMPONENTS, metavar="COMPONENT")
    status = sub.add_parser("status", help="show each component (exit 3 if one is not ready)")
    status.add_argument("components", **comp)
    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "down": cmd_down, "stop": cmd_stop, "start": cmd_start,
               "status": cmd_status}[args.command]  # fmt: skip
    try:
        return handler(args)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"stack: error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
