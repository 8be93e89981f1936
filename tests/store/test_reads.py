"""The store's reads (``store/reads.py``) on both dialects: fresh, read-only, one connection."""

from __future__ import annotations

import socket
import sqlite3
from decimal import Decimal
from pathlib import Path

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import mysql_params
from tests.dashboard.helpers import expected_rows, synthetic_trades
from tests.store.helpers import migrated

from tradepipe.core.rows import decimal_text
from tradepipe.store import MinuteReads, QueryError, Store, connect, parse_db_url, reads


def upsert(url: str, minutes: int, start_ms: int) -> None:
    store = Store(url)
    try:
        store.upsert(synthetic_trades(minutes, start_ms=start_ms))
    finally:
        store.close()


def test_a_kept_connection_sees_every_later_commit(db_url: str) -> None:
    """Rule 1 and 4: the reused connection holds no snapshot (MySQL autocommit)."""
    start = 1_732_406_400_000
    upsert(db_url, 3, start)
    reads = MinuteReads(parse_db_url(db_url))
    try:
        first = reads.newest("BTCUSDT")
        assert first == expected_rows(synthetic_trades(3, start_ms=start))[-1].timestamp
        upsert(db_url, 2, start + 10 * 60_000)
        later = reads.newest("BTCUSDT")
        assert later is not None and first is not None and later > first
        assert len(reads.minutes("BTCUSDT", "2000-01-01 00:00:00", later)) == 5
        assert reads.symbols() == ["BTCUSDT"]
    finally:
        reads.close()


def test_sqlite_reads_never_write_nor_create(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "t.db"
    reads = MinuteReads(parse_db_url(f"sqlite:///{path}"))
    with pytest.raises(QueryError, match="does not exist"):
        reads.symbols()
    assert not path.parent.exists()  # a writer's connect would have created the folder
    url = f"sqlite:///{path}"
    conn = connect(parse_db_url(url))
    conn.query("CREATE TABLE trade_minutes (symbol TEXT)")
    conn.close()
    ro = connect(parse_db_url(url), read_only=True)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.query("INSERT INTO trade_minutes VALUES ('X')")
    finally:
        ro.close()
    assert reads.symbols() == []


@pytest.mark.mysql
def test_a_killed_mysql_connection_is_replaced_by_the_next_read(mysql_db: str) -> None:
    """Rule 4: a connection the server dropped fails the ping and a new one answers."""
    migrated(mysql_db)
    upsert(mysql_db, 1, 1_732_406_400_000)
    reads = MinuteReads(parse_db_url(mysql_db))
    try:
        assert reads.symbols() == ["BTCUSDT"]
        (thread_id,) = reads._connector.get().query("SELECT CONNECTION_ID()")[0]
        admin = pymysql.connect(**mysql_params(mysql_db), autocommit=True)  # type: ignore[arg-type]
        with admin, admin.cursor() as cur:
            cur.execute(f"KILL CONNECTION {int(thread_id)}")
        assert reads.symbols() == ["BTCUSDT"]
        (again,) = reads._connector.get().query("SELECT CONNECTION_ID()")[0]
        assert again != thread_id
    finally:
        reads.close()


def test_an_unreachable_mysql_is_a_query_error_without_the_password() -> None:
    with socket.socket() as s:  # a loopback port nothing listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    reads = MinuteReads(parse_db_url(f"mysql://reader:pa55-w0rd@127.0.0.1:{port}/db"))
    with pytest.raises(QueryError, match=r"cannot connect to MySQL .*:\*\*\*@.*Can't connect") as e:
        reads.symbols()
    assert "pa55-w0rd" not in str(e.value)


CANONICAL_CASES = [
    "0.00000000",
    "-0.00000000",
    "1.50000000",
    "00.50000000",
    "1.5",
    "1.500000000",
    "+1.50000000",
    "1E+2",
    "0E-8",
    "-12.34567890",
    " 1.50000000",
    "1.50000000 ",
    "1,50000000",
    "1.5000000a",
    "0.0000000000000001",
    "123456789.1234567890123456",
    "-0.0000000000000000",
    "7",
    "-7.0",
    "1" * 101 + ".00000000",
    "1" * 100 + ".00000000",
]


@pytest.mark.parametrize("column", ["total_btc_b", "total_usd_s", "avg_b", "open"])
@given(
    st.one_of(
        st.sampled_from(CANONICAL_CASES),
        st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
        st.decimals(allow_nan=False, allow_infinity=False, places=16).map(str),
        st.from_regex(r"-?[0-9]{1,3}\.[0-9]{6,18}", fullmatch=True),
    )
)
def test_the_canonical_text_fast_path_prints_what_decimal_text_prints(
    column: str, text: str
) -> None:
    """Rule 2's fast path (text already in contract form is returned as is) answers exactly
    what the slow path (Decimal, then decimal_text at the column's scale) answers, or the same
    QueryError, for text of any shape and for MySQL's Decimal objects."""
    try:
        want: object = decimal_text(Decimal(text), column)
    except ArithmeticError:
        want = QueryError
    for value in (text, Decimal(text)) if want is not QueryError else (text,):
        try:
            got: object = reads._exact(value, column)
        except QueryError:
            got = QueryError
        assert got == want, (value, column)
