"""Order-flow columns on a database upgraded from before them (migration 0003): old rows keep
working with the columns NULL, new trades never fill them with a partial count, and
``tradepipe load`` of every trade of a minute backfills them exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.store.helpers import BINANCE, BTC_FILE, ETH_FILE, data_file, expected, real_trades

from tradepipe.cli import main
from tradepipe.core import FLOW_COLUMNS, Trade, aggregate
from tradepipe.core.rows import BASE_COLUMNS
from tradepipe.store import Store, available, connect, fetch_texts, migrate, parse_db_url
from tradepipe.store.minutes import TABLE, values_of

N_BASE = len(BASE_COLUMNS)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def old_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database at migration 0001 only, as every deployment was before this change."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/old.db"
    else:
        url = request.getfixturevalue("mysql_db")
    conn = connect(parse_db_url(url))
    with monkeypatch.context() as m:
        first = [x for x in available(conn.dialect) if x.version == 1]
        m.setattr("tradepipe.store.migrations.available", lambda dialect: first)
        assert [x.version for x in migrate(conn)] == [1]
    conn.close()
    return url


def write_old_rows(url: str, trades: list[Trade]) -> None:
    """Rows as the code before migration 0003 wrote them: the seed's columns and agg_ids."""
    conn = connect(parse_db_url(url))
    try:
        cols = ", ".join(conn.quote(c) for c in (*BASE_COLUMNS, "agg_ids"))
        marks = ", ".join([conn.ph] * (N_BASE + 1))
        with conn.transaction():
            conn.execute_many(
                f"INSERT INTO {TABLE} ({cols}) VALUES ({marks})",
                [(*values_of(p)[:N_BASE], values_of(p)[-1]) for p in aggregate(trades).values()],
            )
    finally:
        conn.close()


def upgrade(url: str) -> None:
    conn = connect(parse_db_url(url))
    try:
        assert 3 in [m.version for m in migrate(conn)]
    finally:
        conn.close()


def rows(url: str) -> list[tuple[str, ...]]:
    conn = connect(parse_db_url(url))
    try:
        return fetch_texts(conn)
    finally:
        conn.close()


def without_flow(texts: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    return [(*t[:N_BASE], *[""] * len(FLOW_COLUMNS)) for t in texts]


def test_old_rows_read_with_null_flow_and_stay_null_when_merged(old_url: str) -> None:
    trades = real_trades()
    first, rest = trades[: len(trades) // 2], trades[len(trades) // 2 :]
    write_old_rows(old_url, first)
    upgrade(old_url)
    assert rows(old_url) == without_flow(expected(first))
    result = Store(old_url).upsert(rest)  # the Lambda with the next object
    assert result.added == len(rest)
    got = rows(old_url)
    want = expected(trades)
    split = {t[1] for t in expected(first)}  # minutes that were stored before: flow unknown
    for g, w in zip(got, want, strict=True):
        assert g[:N_BASE] == w[:N_BASE]  # the seed's columns are exact either way
        assert g[N_BASE:] == (("",) * len(FLOW_COLUMNS) if g[1] in split else w[N_BASE:])
    assert any(g[1] not in split for g in got)  # some minutes are new, flow filled


def test_load_backfills_the_flow_of_old_rows(
    old_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(data_file(BTC_FILE)), str(BINANCE / ETH_FILE)]
    trades = real_trades() + real_trades(ETH_FILE)
    write_old_rows(old_url, trades)
    upgrade(old_url)
    assert rows(old_url) == without_flow(expected(trades))
    # a batch holding only part of a minute cannot prove the minute: nothing changes
    part = [t for t in real_trades() if t.time_ms // 60_000 == trades[0].time_ms // 60_000][:50]
    assert Store(old_url).upsert(part).rows == 0
    assert rows(old_url) == without_flow(expected(trades))
    # loading the files again (small batches: minutes straddle the size) fills every row in
    assert main(["load", *files, "--db", old_url, "--batch", "100"]) == 0
    assert ", 0 new, " in capsys.readouterr().err
    assert rows(old_url) == expected(trades)


def test_a_recount_that_disagrees_with_the_stored_row_leaves_it_alone(old_url: str) -> None:
    trades = real_trades()
    minute = [t for t in trades if t.time_ms // 60_000 == trades[0].time_ms // 60_000]
    write_old_rows(old_url, minute)
    upgrade(old_url)
    conn = connect(parse_db_url(old_url))
    try:
        with conn.transaction():  # a stored row that does not match its own trades
            conn.query(
                f"UPDATE {TABLE} SET {conn.quote('trades_b')} = {conn.quote('trades_b')} + 1"
            )
    finally:
        conn.close()
    before = rows(old_url)
    assert Store(old_url).upsert(minute).rows == 0
    assert rows(old_url) == before
    assert before[0][N_BASE:] == ("",) * len(FLOW_COLUMNS)
