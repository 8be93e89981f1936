"""Migrations on real databases: applied once, recorded, safe twice and concurrently."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tests.store.helpers import real_trades

from tradepipe.cli import main
from tradepipe.store import (
    Migration,
    MigrationError,
    NotMigratedError,
    Store,
    available,
    connect,
    migrate,
    parse_db_url,
    require_current,
)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fresh.db"
    url: str = request.getfixturevalue("mysql_db")
    return url


def tables(url: str) -> set[str]:
    conn = connect(parse_db_url(url))
    try:
        if conn.dialect == "sqlite":
            rows = conn.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = conn.query("SHOW TABLES")
        return {r[0] for r in rows}
    finally:
        conn.close()


def test_packaged_migrations_cover_both_dialects() -> None:
    mysql, sqlite = available("mysql"), available("sqlite")
    assert [m.version for m in mysql] == [m.version for m in sqlite] != []
    assert all(m.statements() for m in mysql + sqlite)


def test_migrate_twice_applies_once(empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--db", empty_url]) == 0
    assert "applied 0001_trade_minutes" in capsys.readouterr().err
    assert {"trade_minutes", "schema_migrations"} <= tables(empty_url)
    assert main(["migrate", "--db", empty_url]) == 0
    newest = available(parse_db_url(empty_url).dialect)[-1]
    assert f"is up to date (version {newest.version:04d})" in capsys.readouterr().err
    conn = connect(parse_db_url(empty_url))
    recorded = conn.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [tuple(r) for r in recorded] == [
        (m.version, m.name) for m in available(parse_db_url(empty_url).dialect)
    ]
    assert recorded[:2] == [(1, "trade_minutes"), (2, "minute_checks")]
    conn.close()


def test_concurrent_migrations_are_safe(empty_url: str) -> None:
    results: list[object] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        conn = connect(parse_db_url(empty_url))
        try:
            barrier.wait()
            results.append(len(migrate(conn)))
        except BaseException as exc:
            results.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(isinstance(r, int) for r in results), results
    # every migration applied exactly once, by whichever run got to it first
    assert sum(results) == len(available(parse_db_url(empty_url).dialect))  # type: ignore[arg-type]


def test_writers_refuse_an_unmigrated_database(empty_url: str) -> None:
    conn = connect(parse_db_url(empty_url))
    with pytest.raises(NotMigratedError, match="run `tradepipe migrate --db URL` first"):
        require_current(conn)
    conn.close()
    with pytest.raises(NotMigratedError, match="lacks migration"):
        Store(empty_url).upsert(real_trades()[:1])


def test_edited_applied_migration_is_an_error(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = connect(parse_db_url(empty_url))
    migrate(conn)
    edited = [
        Migration(m.version, m.name, m.sql + "\n-- edited\n") for m in available(conn.dialect)
    ]
    monkeypatch.setattr("tradepipe.store.migrations.available", lambda dialect: edited)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(conn)
    conn.close()


def test_migrate_bad_url_and_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--db", "postgres://x@y/z"]) == 2
    assert "unsupported database URL scheme" in capsys.readouterr().err
    # 127.0.0.1:9 (discard) is closed here: a clear error, exit 1, no password printed
    assert main(["migrate", "--db", "mysql://u:hunter2@127.0.0.1:9/x?connect_timeout=2"]) == 1
    err = capsys.readouterr().err
    assert "mysql://u:***@127.0.0.1:9/x" in err and "hunter2" not in err
