"""The local test stack: Apache Kafka (KRaft), MariaDB and an S3 server (moto), on loopback.

Run it through the ``scripts/stack`` wrapper; ``scripts/stack --help`` lists the commands.
Standard library only, so it runs on any Python 3.11 before the virtualenv exists (only
moto comes from ``.venv``).

Rules this script keeps:

1. Everything lives under ``STACK_DIR`` (default ``.stack/`` in the repository): one folder per
   component with its data, rendered configuration, log and pid file.
2. A process is ours only if its pid file says so *and* its command line carries the marker we
   started it with; ``down`` and ``stop`` signal nothing else. A stale pid file is removed.
3. A component is "up" only once it answered a real request: a Kafka Metadata request that lists
   the broker, a SQL query as the test user, an HTTP request that lists the test bucket.
4. ``stop`` keeps the data and ``start`` reuses it with the same port, so fault tests can kill a
   component and bring it back while the others keep running.
5. A component whose ``TRADEPIPE_TEST_*`` variable is set is external: never started or stopped,
   only checked for reachability (TCP) and copied into ``.stack/env``.
6. Holds: ``up --hold TOKEN --hold-pid PID`` records who needs the stack; ``down --release TOKEN``
   stops it only when no other live hold (or a manual ``up``) remains, so two ``make test`` runs
   in one tree do not pull the stack from under each other.
"""

# ruff: noqa: S603, S607  -- starting the components as subprocesses is this script's job

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
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


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead; our own children are reaped)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_port_free(port: int, deadline: float) -> None:
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


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
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def marker(self) -> str:
        """A string on the command line of every process we start for this component."""
        return str(self.dir)

    def pid(self) -> int | None:
        """Our running process, or None (removing a stale pid file)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and self.marker in _cmdline(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self) -> None:
        """Start (or keep) the server and wait until it answers."""
        pid = self.pid()
        if pid is None:
            for port in (self.port, *self.extra_ports):
                if _port_open(port):
                    raise StackError(
                        f"{self.name}: port {port} is already in use by a process this script "
                        f"did not start; stop it or choose another port (see README, Local stack)"
                    )
            self.dir.mkdir(parents=True, exist_ok=True)
            self.prepare()
            cmd = self.command()
            with self.log_file.open("ab") as out:
                shown = " ".join(a if len(a) < 300 else a[:60] + "..." for a in cmd)
                out.write(f"\n=== {time.strftime('%F %T')} {shown}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.dir,
                    start_new_session=True,
                )
            pid = proc.pid
            self.pid_file.write_text(f"{pid}\n")
            log(f"{self.name}: started pid {pid} on {HOST}:{self.port}, log {self.log_file}")
        self.wait_ready(pid)
        self.after_ready()

    def wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        started = time.monotonic()
        why: str | None = "not probed"
        while time.monotonic() < deadline:
            if not _alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"{self.name}: process {pid} exited before it was ready; last log lines:\n"
                    + _tail(self.log_file)
                )
            why = self.probe()
            if why is None:
                log(f"{self.name}: ready after {time.monotonic() - started:.1f}s")
                return
            time.sleep(0.3)
        raise StackError(
            f"{self.name}: not ready after {TIMEOUT:.0f}s ({why}); last log lines:\n"
            + _tail(self.log_file)
        )

    def stop(self, *, kill: bool = False, grace: float = 60.0) -> bool:
        """Stop our process (SIGTERM, SIGKILL after ``grace`` s); False if none was running."""
        pid = self.pid()
        if pid is None:
            return False
        sig = signal.SIGKILL if kill else signal.SIGTERM
        # We started it as a session leader: signal the whole group (helpers included).
        group = os.getpgid(pid) == pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig) if group else os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _alive(pid):
            if time.monotonic() > deadline:
                log(f"{self.name}: pid {pid} ignored SIGTERM for {grace:.0f}s, killing")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        _wait_port_free(self.port, time.monotonic() + 10)
        log(f"{self.name}: stopped pid {pid}" + (" (SIGKILL)" if kill else ""))
        return True


# --------------------------------------------------------------------------------------------
# Kafka


def _kafka_request(port: int, api_key: int, version: int, body: bytes) -> bytes:
    """One request/response on a fresh connection (request header v1, response header v0)."""
    client = b"tradepipe-stack"
    header = struct.pack(">hhih", api_key, version, 1, len(client)) + client
    payload = header + body
    with socket.create_connection((HOST, port), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        data = _recv_exact(sock, size)
    return data[4:]  # drop correlation id


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return buf


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def ints(self) -> list[int]:
        return [self.take(">i") for _ in range(max(self.take(">i"), 0))]


def kafka_metadata(port: int) -> tuple[list[str], list[str]]:
    """Brokers (host:port) and topic names, from ApiVersions + a Metadata request (v4..v8)."""
    r = _Reader(_kafka_request(port, 18, 0, b""))
    if (err := r.take(">h")) != 0:
        raise ConnectionError(f"ApiVersions error {err}")
    versions = {}
    for _ in range(r.take(">i")):
        key, low, high = r.take(">h"), r.take(">h"), r.take(">h")
        versions[key] = (low, high)
    low, high = versions.get(3, (0, -1))
    version = min(high, 8)
    if version < max(low, 4):
        raise ConnectionError(f"broker offers Metadata v{low}..v{high}, this probe speaks v4..v8")
    body = struct.pack(">ib", -1, 0)  # all topics, no auto-creation
    if version >= 8:
        body += struct.pack(">bb", 0, 0)
    r = _Reader(_kafka_request(port, 3, version, body))
    r.take(">i")  # throttle
    brokers = []
    for _ in range(r.take(">i")):
        r.take(">i")
        host = r.string()
        brokers.append(f"{host}:{r.take('>i')}")
        r.string()  # rack
    r.string()  # cluster id
    r.take(">i")  # controller
    topics = []
    for _ in range(r.take(">i")):
        r.take(">h")
        name = r.string()
        internal = r.take(">b")
        for _ in range(r.take(">i")):
            r.take(">h"), r.take(">i"), r.take(">i")
            if version >= 7:
                r.take(">i")
            r.ints(), r.ints()
            if version >= 5:
                r.ints()
        if version >= 8:
            r.take(">i")
        if name and not internal:
            topics.append(name)
    return brokers, sorted(topics)


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
    template = (ROOT / "stack" / "kafka" / "server.properties.in").read_text()
    props.write_text(
        template.replace("@PORT@", str(KAFKA_PORT))
        .replace("@CONTROLLER_PORT@", str(KAFKA_CONTROLLER_PORT))
        .replace("@LOG_DIR@", str(data))
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


def kafka_after_ready() -> None:
    """Ask for a group coordinator until there is one: the broker creates __consumer_offsets on
    the first such request, so consumer groups in tests then join without a retry."""
    deadline = time.monotonic() + 30
    key = b"tradepipe-stack"
    err = -1
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, struct.error):
            body = struct.pack(">h", len(key)) + key + b"\0"  # key, key_type 0 = group
            r = _Reader(_kafka_request(KAFKA_PORT, 10, 1, body))
            r.take(">i")  # throttle
            if (err := r.take(">h")) == 0:
                return
        time.sleep(0.2)
    raise StackError(f"kafka: no group coordinator after 30s (error {err})")


def kafka_probe() -> str | None:
    try:
        brokers, _ = kafka_metadata(KAFKA_PORT)
    except (OSError, struct.error) as exc:
        return f"metadata request: {exc}"
    return None if brokers else "metadata lists no broker yet"


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


def mysql_query(sql: str) -> subprocess.CompletedProcess[str]:
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    return subprocess.run(
        [client, "--no-defaults", "--protocol=TCP", "-h", HOST, "-P", str(MYSQL_PORT),
         "-u", MYSQL_USER, f"-p{MYSQL_PASSWORD}", "--connect-timeout=3", "-N", "-B",
         MYSQL_DB, "-e", sql],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=15,
    )  # fmt: skip


def mysql_probe() -> str | None:
    try:
        proc = mysql_query("SELECT 1")
    except subprocess.TimeoutExpired:
        return "query timed out"
    return None if proc.stdout.strip() == "1" else (proc.stderr.strip() or proc.stdout.strip())


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


def _http(method: str, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, S3_PORT, timeout=3)
    try:
        conn.request(method, path, headers={"Content-Length": "0"} if method == "PUT" else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def s3_probe() -> str | None:
    try:
        status = _http("GET", "/")
    except OSError as exc:
        return f"HTTP: {exc}"
    return None if status == 200 else f"HTTP {status}"


def s3_after_ready() -> None:
    if _http("HEAD", f"/{S3_BUCKET}") != 200:
        status = _http("PUT", f"/{S3_BUCKET}")
        if status != 200:
            raise StackError(f"s3: creating bucket {S3_BUCKET} answered HTTP {status}")
        log(f"s3: created bucket {S3_BUCKET}")


class _MotoComponent(Component):
    """moto's command line does not contain our folder, so the marker is its port argument."""

    @property
    def marker(self) -> str:
        return f"-H {HOST} -p {S3_PORT}"


STACK: dict[str, Component] = {
    "kafka": Component(
        "kafka", KAFKA_PORT, kafka_prepare, kafka_command, kafka_probe, kafka_after_ready,
        extra_ports=(KAFKA_CONTROLLER_PORT,),
    ),
    "mysql": Component("mysql", MYSQL_PORT, mysql_prepare, mysql_command, mysql_probe),
    "s3": _MotoComponent("s3", S3_PORT, lambda: None, s3_command, s3_probe, s3_after_ready),
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
        if owner == "manual" or (owner.isdigit() and _alive(int(owner))):
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
            comp.start()
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
            with contextlib.suppress(OSError, struct.error):
                extra = f"  topics: {', '.join(kafka_metadata(KAFKA_PORT)[1]) or '-'}"
        print(f"{name:6} {state:9} pid {pid}  {HOST}:{comp.port}  log {comp.log_file}{extra}")
        rc = rc if why is None else 3
    if holds := live_holds():
        print(f"holds: {', '.join(holds)}")
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/stack",
        description="Local Kafka (KRaft), MariaDB and S3 (moto) on 127.0.0.1 for tests. "
        "Data, logs and pid files under .stack/. See README, 'Local stack'.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    comp = {"nargs": "*", "metavar": "COMPONENT", "help": f"any of {', '.join(COMPONENTS)}"}
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
