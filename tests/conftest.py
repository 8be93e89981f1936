"""Shared fixtures: where the real Kafka, MariaDB and S3 servers are, and control over them.

Where a component is comes from the environment (``TRADEPIPE_TEST_KAFKA``,
``TRADEPIPE_TEST_MYSQL_URL``, ``TRADEPIPE_TEST_S3_ENDPOINT``, ``TRADEPIPE_TEST_S3_BUCKET``), and
for any variable not set there from ``.stack/env``, which ``scripts/stack up`` writes; so plain
``.venv/bin/python -m pytest`` works after a manual ``scripts/stack up``, and ``make test`` needs
nothing more.

A component that is not configured or does not answer makes the tests that need it **fail** when
``CI=true`` (a missing component must never pass as "skipped" in CI) and **skip**, with the reason
and the command to run, otherwise.

Fixtures (session-scoped unless noted):

- ``kafka_bootstrap``: ``"host:port"`` of a broker that answered a TCP connect.
- ``kafka_topic`` (function): a fresh, uniquely named topic (1 partition), deleted afterwards.
- ``mysql_url``: ``mysql://user:pass@host:port/db`` on which ``SELECT 1`` worked.
- ``mysql_db`` (function): a fresh, uniquely named database on that server, dropped afterwards;
  yields its URL (same user, host and port).
- ``s3_endpoint``: ``http://host:port`` of the S3 server; ``s3_bucket``: its test bucket.
- ``s3_client_kwargs``: keyword arguments for ``aioboto3.Session().client("s3", **kwargs)``:
  endpoint, region and credentials (``TRADEPIPE_TEST_S3_{REGION,ACCESS_KEY,SECRET_KEY}``,
  default ``us-east-1``/``test``/``test``, which moto accepts).
- ``stack_control`` (function): stops and starts components of ``scripts/stack`` mid-test
  (``await stack_control.stop("kafka", kill=True)``, ``await stack_control.start("kafka")``, or
  the ``*_sync`` variants); whatever a test stopped is started again at teardown. Tests using it
  are skipped (failed in CI) when the component is external, i.e. not run by ``scripts/stack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import urlopen

import pymysql
import pytest

ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = ROOT / "scripts" / "stack"
STACK_ENV_FILE = Path(os.environ.get("STACK_DIR", ROOT / ".stack")) / "env"
COMPONENT_VARS = {
    "kafka": "TRADEPIPE_TEST_KAFKA",
    "mysql": "TRADEPIPE_TEST_MYSQL_URL",
    "s3": "TRADEPIPE_TEST_S3_ENDPOINT",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere: the one policy for a component that is not there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(reason)


def read_env_file(path: Path) -> dict[str, str]:
    """``export KEY=VALUE`` / ``KEY=VALUE`` lines; ``#`` comments and blank lines ignored."""
    values: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return values
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("'\"")
    return values


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The ``TRADEPIPE_TEST_*`` settings: the environment wins over ``.stack/env``."""
    merged = read_env_file(STACK_ENV_FILE)
    merged.update({k: v for k, v in os.environ.items() if k.startswith("TRADEPIPE_TEST_") and v})
    return merged


def _setting(env: dict[str, str], var: str, component: str) -> str:
    value = env.get(var, "")
    if not value:
        unavailable(
            f"{component} is not configured: set {var}, or run `scripts/stack up` "
            f"(writes {STACK_ENV_FILE}); `make test` does both"
        )
    return value


def _tcp_ok(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host_port(hostport: str, default_port: int) -> tuple[str, int]:
    host, _, port = hostport.strip().rpartition(":")
    return (host.strip("[]"), int(port)) if host else (hostport, default_port)


# ---------------------------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_env: dict[str, str]) -> str:
    servers = _setting(stack_env, "TRADEPIPE_TEST_KAFKA", "Kafka")
    first = servers.split(",")[0]
    if not _tcp_ok(*_host_port(first, 9092)):
        unavailable(f"Kafka at {first} (TRADEPIPE_TEST_KAFKA) does not accept connections")
    return servers


@pytest.fixture
async def kafka_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(name, 1, 1)])
        errors = [err for _, err, *_ in resp.topic_errors if err]
        assert not errors, f"creating topic {name}: {resp}"
        yield name
        with contextlib.suppress(Exception):  # the broker may be down after a fault test
            await admin.delete_topics([name])
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------- MySQL


def mysql_params(url: str) -> dict[str, object]:
    """``mysql://user:pass@host:port/db`` → keyword arguments for ``pymysql.connect``
    (``aiomysql.connect`` takes the same but calls ``database`` ``db``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mysql+pymysql", "mariadb"):
        raise ValueError(f"not a mysql:// URL: {url!r}")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
    }


def _with_db(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def mysql_url(stack_env: dict[str, str]) -> str:
    url = _setting(stack_env, "TRADEPIPE_TEST_MYSQL_URL", "MySQL")
    try:
        conn = pymysql.connect(**mysql_params(url), connect_timeout=5)  # type: ignore[arg-type]
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.MySQLError as exc:
        unavailable(f"MySQL at {urlsplit(url).hostname}:{urlsplit(url).port}: {exc}")
    return url


@pytest.fixture
def mysql_db(mysql_url: str) -> Iterator[str]:
    params = mysql_params(mysql_url)
    params.pop("database")
    name = f"tp_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(**params, connect_timeout=5, autocommit=True)  # type: ignore[arg-type]
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield _with_db(mysql_url, name)
    # A fault test may leave the server restarting; a leftover database in a test server is
    # harmless, so an unreachable server at teardown is not an error.
    with contextlib.suppress(pymysql.OperationalError):
        conn = pymysql.connect(**params, connect_timeout=5, autocommit=True)  # type: ignore[arg-type]
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


# ---------------------------------------------------------------------------------- S3


@pytest.fixture(scope="session")
def s3_endpoint(stack_env: dict[str, str]) -> str:
    endpoint = _setting(stack_env, "TRADEPIPE_TEST_S3_ENDPOINT", "S3").rstrip("/")
    try:
        with urlopen(endpoint + "/", timeout=5):  # noqa: S310 -- a configured http(s) endpoint
            pass
    except OSError as exc:
        # Any HTTP answer (even 403 from a real S3) proves the server is there.
        if getattr(exc, "code", None) is None:
            unavailable(f"S3 at {endpoint} (TRADEPIPE_TEST_S3_ENDPOINT) does not answer: {exc}")
    return endpoint


@pytest.fixture(scope="session")
def s3_bucket(stack_env: dict[str, str], s3_endpoint: str) -> str:
    return stack_env.get("TRADEPIPE_TEST_S3_BUCKET") or "tradepipe-test"


@pytest.fixture(scope="session")
def s3_client_kwargs(stack_env: dict[str, str], s3_endpoint: str) -> dict[str, str]:
    return {
        "endpoint_url": s3_endpoint,
        "region_name": stack_env.get("TRADEPIPE_TEST_S3_REGION", "us-east-1"),
        "aws_access_key_id": stack_env.get("TRADEPIPE_TEST_S3_ACCESS_KEY", "test"),
        "aws_secret_access_key": stack_env.get("TRADEPIPE_TEST_S3_SECRET_KEY", "test"),
    }


# ---------------------------------------------------------------------------------- faults


class StackControl:
    """Stop/start components of ``scripts/stack`` (same data and port) from inside a test."""

    def __init__(self) -> None:
        self.stopped: set[str] = set()

    def _check(self, component: str) -> None:
        if component not in COMPONENT_VARS:
            raise ValueError(f"unknown component {component!r}")
        out = subprocess.run(
            [str(STACK_SCRIPT), "status", component],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if "external" in out.stdout:
            unavailable(f"{component} is external ({COMPONENT_VARS[component]}): cannot stop it")
        if component not in self.stopped and out.returncode != 0:
            unavailable(f"{component} is not running under scripts/stack:\n{out.stdout}")

    @staticmethod
    def _argv(action: str, component: str, kill: bool) -> list[str]:
        return [str(STACK_SCRIPT), action, component, *(["--kill"] if kill else [])]

    @staticmethod
    def _report(argv: list[str], rc: int, output: str) -> None:
        if rc != 0:
            pytest.fail(f"`{' '.join(argv[1:])}` exited {rc}:\n{output}", pytrace=False)

    def stop_sync(self, component: str, *, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill=True``) and wait until the process is gone."""
        self._check(component)
        argv = self._argv("stop", component, kill)
        out = subprocess.run(
            argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        self.stopped.add(component)
        self._report(argv, out.returncode, out.stdout + out.stderr)

    def start_sync(self, component: str) -> None:
        """Start again with the same data and port; returns once it answers requests."""
        argv = self._argv("start", component, False)
        out = subprocess.run(
            argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        self._report(argv, out.returncode, out.stdout + out.stderr)
        self.stopped.discard(component)

    async def _run(self, argv: list[str]) -> tuple[int, str]:
        # A subprocess, not a thread: the event loop (and the code under test) keeps running.
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    async def stop(self, component: str, *, kill: bool = False) -> None:
        self._check(component)
        argv = self._argv("stop", component, kill)
        rc, output = await self._run(argv)
        self.stopped.add(component)
        self._report(argv, rc, output)

    async def start(self, component: str) -> None:
        argv = self._argv("start", component, False)
        rc, output = await self._run(argv)
        self._report(argv, rc, output)
        self.stopped.discard(component)


@pytest.fixture
def stack_control() -> Iterator[StackControl]:
    control = StackControl()
    yield control
    for component in sorted(control.stopped):  # leave the stack whole for the next test
        control.start_sync(component)
