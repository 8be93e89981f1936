"""deploy/host-setup.sh, the host's installer, on what can run here: the bundle deploy/bundle.py
writes (without the wheel's and the jars' bulk), unpacked with ``tar`` as the user data unpacks
it, installed with ``--files-only`` into a temporary root, the database secret read from the
local Secrets Manager. What it writes must be the repository's units and broker settings
unchanged, settings every service accepts, and the verify unit's database URL in a file only its
owner reads. The package installs (dnf, pip), ``tradepipe migrate`` and systemctl run only on
the host."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import boto3
import pymysql
import pytest
from scripts.kafka_config import render
from tests.deploy.template import ROOT
from tests.store.helpers import load_handler, mysql_kwargs

from tradepipe.config import Settings, require_objects_target
from tradepipe.store import parse_db_url

SETUP = ROOT / "deploy" / "host-setup.sh"
SYSTEMD = ROOT / "systemd"


def bundle_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_bundle", ROOT / "deploy" / "bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The bundle's files (a stand-in wheel, no jars), through the real tar.gz and ``tar -x``."""
    mod = bundle_module()
    wheel = tmp_path / "tradepipe-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in")
    archive = tmp_path / "bundle.tar.gz"
    mod.write(archive, mod.members(wheel, []))
    out = tmp_path / "bundle"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
    return out


REGION = "eu-west-1"  # the stack's region in these tests (the secret is created there)


UNUSED_ARN = "arn:aws:secretsmanager:eu-west-1:1:secret:x"  # for runs that stop before reading it


def setup(
    bundle: Path, root: Path, sink: str, *extra: str,
    arn: str = UNUSED_ARN, env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [str(bundle / "deploy" / "host-setup.sh"), "--files-only", "--root", str(root),
         "--bundle", str(bundle), "--bundle-key", "host/abc.tar.gz", "--region", REGION,
         "--bucket", "tp-trades", "--sink", sink, "--symbols", "btcusdt,ethusdt",
         "--db-secret", arn, *extra],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


@pytest.fixture
def secret_of(s3_client_kwargs: dict[str, str]) -> Iterator[Callable[[str], str]]:
    """``secret_of(string)``: the ARN of a new secret holding it, in the local Secrets Manager
    (region ``REGION``); deleted at the end."""
    sm = boto3.client("secretsmanager", **(s3_client_kwargs | {"region_name": REGION}))
    arns: list[str] = []

    def create(string: str) -> str:
        arn: str = sm.create_secret(Name=f"tp-setup-{uuid.uuid4().hex}", SecretString=string)["ARN"]
        arns.append(arn)
        return arn

    yield create
    for arn in arns:
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def verify_env_url(path: Path) -> str:
    """TRADEPIPE_DB_URL of verify.env, unquoted as systemd reads an EnvironmentFile= (a single-
    quoted value is taken literally, as in the shell)."""
    [line] = [x for x in path.read_text().splitlines() if x.strip() and not x.startswith("#")]
    key, _, value = line.partition("=")
    assert key == "TRADEPIPE_DB_URL" and value.startswith("'") and value.endswith("'"), line
    [url] = shlex.split(value)
    return url


def env_file(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip


RDS_SECRET = {
    "username": "tradepipe", "password": "p@ss/w:rd %20$HOME\\'x\"", "dbname": "tradepipe",
    "host": "db.x.rds.amazonaws.com", "port": 3306, "engine": "mysql",
}  # fmt: skip


@pytest.mark.parametrize("sink", ["sink", "vector"])
def test_files_only_writes_the_repositorys_units_and_settings(
    bundle: Path, tmp_path: Path, sink: str, setup_env: dict[str, str],
    secret_of: Callable[[str], str],
) -> None:  # fmt: skip
    root = tmp_path / "root"
    secret = json.dumps(RDS_SECRET)
    arn = secret_of(secret)
    res = setup(bundle, root, sink, arn=arn, env=setup_env)
    assert res.returncode == 0, res.stdout + res.stderr
    mover = f"tradepipe-{sink}"
    units = root / "etc" / "systemd" / "system"
    assert sorted(p.name for p in units.iterdir()) == sorted(
        ["kafka.service", "tradepipe-producer.service", f"{mover}.service",
         "tradepipe-verify.service", "tradepipe-verify.timer"]
    )  # fmt: skip
    for unit in units.iterdir():
        assert unit.read_bytes() == (SYSTEMD / unit.name).read_bytes(), unit.name
    kafka = root / "etc" / "kafka"
    assert (kafka / "server.properties").read_text() == render("host")
    assert (kafka / "log4j2.xml").read_bytes() == (ROOT / "stack/kafka/log4j2.xml").read_bytes()
    cluster = env_file(kafka / "cluster.env")["KAFKA_CLUSTER_ID"]
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster), cluster

    # the producer's environment: the example with the stack's symbols, valid settings
    env = env_file(root / "etc" / "tradepipe" / "tradepipe.env")
    example = env_file(SYSTEMD / "tradepipe.env.example")
    assert env == example | {"TRADEPIPE_FEED_SYMBOLS": "btcusdt,ethusdt"}
    settings = Settings.load(None, env)
    assert settings.feed.symbols == ["btcusdt", "ethusdt"]
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    if sink == "sink":
        toml = root / "etc" / "tradepipe" / "tradepipe.toml"  # the sink unit's --config
        assert f"--config /etc/tradepipe/{toml.name}" in (SYSTEMD / f"{mover}.service").read_text()
        sink_settings = Settings.load(toml, {})
        require_objects_target(sink_settings)
        assert (sink_settings.sink.objects, sink_settings.s3.bucket, sink_settings.s3.region) == (
            "s3", "tp-trades", "eu-west-1")  # fmt: skip
        tomllib.loads(toml.read_text())
    else:
        vector = root / "etc" / "tradepipe"
        assert (vector / "vector.toml").read_bytes() == (ROOT / "vector/vector.toml").read_bytes()
        assert env_file(vector / "vector.env") == {
            "TRADEPIPE_S3_BUCKET": "tp-trades", "TRADEPIPE_S3_REGION": "eu-west-1",
            "TRADEPIPE_S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
            "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        }  # fmt: skip

    # the verify unit's database URL: the one the Lambda reads from the same secret, in a file
    # only its owner (root on the host) may read, named by the unit; no temporary file left
    verify_env = root / "etc" / "tradepipe" / "verify.env"
    assert stat.S_IMODE(verify_env.stat().st_mode) == 0o600
    assert parse_db_url(verify_env_url(verify_env)) == load_handler().url_from_secret(secret)
    assert "-/etc/tradepipe/verify.env" in (SYSTEMD / "tradepipe-verify.service").read_text()
    assert sorted(p.name for p in verify_env.parent.iterdir() if p.name.startswith(".")) == []
    assert RDS_SECRET["password"] not in res.stdout + res.stderr

    # again (every boot with a new bundle): same files, the broker's cluster id kept, and the
    # URL of the secret as it is now (a changed password is picked up), still 0600
    rotated = RDS_SECRET | {"password": "rotated"}
    arn = secret_of(json.dumps(rotated))
    again = setup(bundle, root, sink, arn=arn, env=setup_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert env_file(kafka / "cluster.env")["KAFKA_CLUSTER_ID"] == cluster
    assert stat.S_IMODE(verify_env.stat().st_mode) == 0o600
    assert parse_db_url(verify_env_url(verify_env)) == load_handler().url_from_secret(
        json.dumps(rotated)
    )


@pytest.mark.parametrize("url", ["mysql://tp:it's@db:3306/d", "", "mysql://tp:a\nb@db:3306/d"])
def test_a_url_that_cannot_be_written_is_refused_and_nothing_written(
    bundle: Path, tmp_path: Path, url: str, setup_env: dict[str, str],
    secret_of: Callable[[str], str],
) -> None:  # fmt: skip
    """A URL-shaped secret is taken as it is: a quote or a newline cannot be single-quoted in an
    EnvironmentFile=, so the setup stops with the reason instead of writing a wrong URL."""
    root = tmp_path / "root"
    res = setup(bundle, root, "sink", arn=secret_of(url or " "), env=setup_env)
    assert res.returncode == 1
    assert "URL is empty or holds a quote or newline" in res.stderr
    assert not (root / "etc" / "tradepipe" / "verify.env").exists()
    assert [p.name for p in (root / "etc" / "tradepipe").iterdir() if p.name.startswith(".")] == []


def test_a_missing_argument_is_refused_with_its_name(bundle: Path, tmp_path: Path) -> None:
    res = subprocess.run([str(SETUP), "--files-only", "--bundle", str(bundle)],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 2 and "--bundle-key is required" in res.stderr
    res = setup(bundle, tmp_path / "root", "kinesis")
    assert res.returncode == 2 and "--sink vector|sink" in res.stderr
    assert not (tmp_path / "root").exists()  # nothing written


@pytest.mark.parametrize(
    "secret",
    [
        "mysql://tp:pw@db.example:3306/tradepipe",
        '{"username": "tradepipe", "password": "p@ss/w:rd %20", "dbname": "tradepipe",'
        ' "host": "db.x.rds.amazonaws.com", "port": 3306, "engine": "mysql"}',
        '{"username": "u", "password": "p", "dbname": "d", "host": "h"}',
        '{"url": "mysql://a:b@c:3307/d"}',
    ],
)
def test_the_migrate_url_is_the_one_the_lambda_reads(secret: str) -> None:
    """host-setup.sh's reading of the database secret (for ``tradepipe migrate``) and the
    handler's give the same URL, password included, for every shape of the secret."""
    res = subprocess.run([str(SETUP), "--secret-url"], input=secret, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert parse_db_url(res.stdout.strip()) == load_handler().url_from_secret(secret)


@pytest.fixture
def setup_env(deploy_bin: Path, s3_client_kwargs: dict[str, str]) -> dict[str, str]:
    """The deploy tools' aws on PATH, pointed at the local AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRADEPIPE_"))}
    return env | {
        "PATH": f"{deploy_bin}:{env.get('PATH', '/usr/bin:/bin')}",
        "AWS_ENDPOINT_URL": s3_client_kwargs["endpoint_url"],
        "AWS_ACCESS_KEY_ID": s3_client_kwargs["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_client_kwargs["aws_secret_access_key"],
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }  # fmt: skip


def migrate_only(
    secret_arn: str, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.executable).parent.parent  # this venv has the tradepipe command
    return subprocess.run(
        [str(SETUP), "--migrate-only", "--region", "us-east-1", "--db-secret", secret_arn,
         "--venv", str(venv), *extra],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_migrate_step_reads_the_secret_and_migrates_mariadb(
    mysql_db: str, setup_env: dict[str, str], s3_client_kwargs: dict[str, str]
) -> None:
    sm = boto3.client("secretsmanager", **s3_client_kwargs)
    u = urlsplit(mysql_db)
    shape = {"username": unquote(u.username or ""), "password": unquote(u.password or ""),
             "host": u.hostname, "port": u.port, "dbname": u.path.lstrip("/")}  # fmt: skip
    arn = sm.create_secret(Name=f"tp-migrate-{uuid.uuid4().hex}", SecretString=json.dumps(shape))[
        "ARN"
    ]
    try:
        res = migrate_only(arn, setup_env)
        assert res.returncode == 0, res.stdout + res.stderr
        conn = pymysql.connect(**mysql_kwargs(mysql_db))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM schema_migrations")
                (applied,) = cur.fetchone()
                cur.execute("SELECT COUNT(*) FROM trade_minutes")
        finally:
            conn.close()
        assert applied >= 1
        again = migrate_only(arn, setup_env)  # every boot with a new bundle: a no-op
        assert again.returncode == 0, again.stderr
        printed = res.stdout + res.stderr + again.stdout + again.stderr
        assert f":{shape['password']}@" not in printed and ":***@" in printed  # masked
    finally:
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_migrate_step_gives_up_after_its_attempts_and_fails(
    setup_env: dict[str, str], s3_client_kwargs: dict[str, str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    sm = boto3.client("secretsmanager", **s3_client_kwargs)
    url = f"mysql://tp:s3cr3t-pw@127.0.0.1:{port}/tradepipe"
    arn = sm.create_secret(Name=f"tp-migrate-{uuid.uuid4().hex}", SecretString=url)["ARN"]
    try:
        res = migrate_only(arn, setup_env, "--migrate-attempts", "2", "--migrate-delay", "0")
    finally:
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    assert res.returncode == 1
    assert "migrate attempt 1 failed" in res.stderr
    assert "tradepipe migrate failed 2 times" in res.stderr
    assert "s3cr3t-pw" not in res.stdout + res.stderr
