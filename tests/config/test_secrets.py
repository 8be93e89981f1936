"""No secret echoed: a database URL's password never reaches stderr or a log line, on every path
that prints a URL: configuration errors, database URL errors, the start-up description of
`tradepipe run` (and its real start-up log against MariaDB), each command's usage errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.local.helpers import ROOT, tradepipe

from tradepipe.config import ConfigError, Settings, redact
from tradepipe.local.pipeline import Plan
from tradepipe.store import DbUrlError, parse_db_url

PASSWORD = "Hunter2-s3cret"
MYSQL = f"mysql://trader:{PASSWORD}@db.internal:3306/tradepipe"

# URLs that configuration refuses (scheme) or that the URL parser refuses (the rest).
CONFIG_REFUSED = [f"postgres://trader:{PASSWORD}@h/db", f"http://trader:{PASSWORD}@h/db"]
PARSER_REFUSED = [
    f"mysql://trader:{PASSWORD}@h:notaport/db",
    f"mysql://trader:{PASSWORD}@h",
    f"mysql://trader:{PASSWORD}@/db",
    f"mysql://trader:{PASSWORD}@h/db?password={PASSWORD}",
    f"mysql://trader:{PASSWORD}@h/db?connect_timeout=soon",
    f"mysql://trader:{PASSWORD}@h/a/b",
]


def hidden(text: str) -> bool:
    return PASSWORD not in text


@pytest.mark.parametrize("url", CONFIG_REFUSED)
def test_configuration_errors_hide_the_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as from_env:
        Settings.load(None, {"TRADEPIPE_DB_URL": url})
    assert str(from_env.value).startswith("TRADEPIPE_DB_URL (db.url): expected ")
    config = tmp_path / "c.toml"
    config.write_text(f'[db]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as from_file:
        Settings.load(config, {})
    with pytest.raises(ConfigError) as from_replace:
        Settings().replace(db={"url": url})
    for exc in (from_env.value, from_file.value, from_replace.value):
        assert hidden(str(exc)) and "trader:***@" in str(exc), exc


@pytest.mark.parametrize("url", PARSER_REFUSED)
def test_url_errors_hide_the_password(url: str) -> None:
    Settings.load(None, {"TRADEPIPE_DB_URL": url})  # the scheme is right: config accepts it
    with pytest.raises(DbUrlError) as info:
        parse_db_url(url)
    assert hidden(str(info.value)) and hidden(repr(info.value))


def test_parsed_urls_and_the_start_up_description_hide_the_password() -> None:
    parsed = parse_db_url(MYSQL)
    assert parsed.password == PASSWORD  # still there for connecting
    assert hidden(str(parsed)) and hidden(repr(parsed))
    described = Plan().describe(Settings().replace(db={"url": MYSQL}))
    assert described["db"] == "mysql://trader:***@db.internal:3306/tradepipe"
    assert all(hidden(v) for v in described.values())


def test_redact_hides_awkward_passwords_whole() -> None:
    for password in ("p@ss", "pa/ss", "p:ss", "p%40ss"):
        text = f"db.url: got 'mysql://u:{password}@h:1/db' and mysql://v:{password}@h"
        shown = redact(text)
        assert password not in shown and "u:***@" in shown, shown
    assert redact("sqlite:///./data/t.db ws://h:9443") == "sqlite:///./data/t.db ws://h:9443"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradepipe.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["run", "--db", PARSER_REFUSED[0]], {}),
        (["run"], {"TRADEPIPE_DB_URL": CONFIG_REFUSED[0]}),
        (["migrate", "--db", PARSER_REFUSED[3]], {}),
        (["migrate"], {"TRADEPIPE_DB_URL": CONFIG_REFUSED[0]}),
        (["dashboard", "--db", PARSER_REFUSED[0]], {}),
        (["sink"], {"TRADEPIPE_DB_URL": CONFIG_REFUSED[0]}),
        (["produce"], {"TRADEPIPE_DB_URL": CONFIG_REFUSED[1]}),
    ],
)
def test_commands_refuse_a_bad_url_without_printing_its_password(
    args: list[str], env: dict[str, str]
) -> None:
    done = cli(*args, env=env)
    assert done.returncode == 2, done
    assert "db.url" in done.stderr or "database URL" in done.stderr or "MySQL URL" in done.stderr
    assert hidden(done.stdout + done.stderr), done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_env(tmp_path: Path) -> dict[str, str]:
    return {
        "TRADEPIPE_SINK_OBJECTS_DIR": str(tmp_path / "objects"),
        "TRADEPIPE_SINK_SPOOL_DIR": str(tmp_path / "spool"),
        "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
        "TRADEPIPE_FEED_QUARANTINE_PATH": str(tmp_path / "quarantine.ndjson"),
        "TRADEPIPE_FEED_STATE_PATH": str(tmp_path / "producer-state.json"),
    }


@pytest.mark.mysql
async def test_the_start_up_log_of_run_hides_the_password(mysql_db: str, tmp_path: Path) -> None:
    """The real thing: `tradepipe run` on MariaDB logs its `starting` line with the URL."""
    parts = urlsplit(mysql_db)
    assert parts.password, "the stack's MariaDB URL carries a password"
    secret = f"{parts.username}:{parts.password}@"
    source = f"ws://127.0.0.1:{free_port()}"  # nothing listens: the feed only retries
    async with tradepipe(
        "run", "--source", source, "--no-dashboard", "--db", mysql_db, env=run_env(tmp_path)
    ) as proc:
        line = await proc.wait_line('"starting"')
        await proc.stop(signal.SIGTERM)
    assert f"{parts.username}:***@{parts.hostname}" in line
    assert all(secret not in text for text in proc.lines), line


@pytest.mark.mysql
async def test_a_refused_login_does_not_print_the_password(mysql_url: str, tmp_path: Path) -> None:
    parts = urlsplit(mysql_url)
    wrong = mysql_url.replace(f":{parts.password}@", f":{PASSWORD}@")
    assert PASSWORD in wrong
    async with tradepipe(
        "run", "--source", f"ws://127.0.0.1:{free_port()}", "--no-dashboard", "--db", wrong,
        env=run_env(tmp_path),
    ) as proc:  # fmt: skip
        assert await proc.exited() != 0
    output = "\n".join(proc.lines)
    assert "Access denied" in output
    assert hidden(output)
