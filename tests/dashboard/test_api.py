"""The dashboard server against real databases: exact values, ranges, errors, static files."""

from __future__ import annotations

import asyncio
import gzip
import socket
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from tests.dashboard.helpers import THREE_SYMBOLS, expected_rows, load, synthetic_trades, trades_of

from tradepipe.core import FLOW_COLUMNS, ROW_COLUMNS, Row
from tradepipe.dashboard import DashboardServer, QueryError, open_reader
from tradepipe.store.reads import row_texts


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


def columns_of(rows: list[Row]) -> dict[str, list[Any]]:
    """What /api/minutes must answer for these rows: exact text, ints as ints."""
    dicts = [r.as_dict() for r in rows]
    out = {c: [d[c] for d in dicts] for c in ROW_COLUMNS if c != "symbol"}
    out["spread"] = [
        None
        if d["avg_b"] is None or d["avg_s"] is None
        else str(Decimal(str(d["avg_b"])) - Decimal(str(d["avg_s"])))
        for d in dicts
    ]
    return out


async def check_every_value(db_url: str, session: aiohttp.ClientSession) -> None:
    trades = trades_of(THREE_SYMBOLS)
    assert trades, f"shared data missing: {THREE_SYMBOLS}"
    load(db_url, trades)
    expected = expected_rows(trades)
    async with DashboardServer(open_reader(db_url), "127.0.0.1:0") as server:
        status, body = await get(session, server.url + "api/symbols")
        assert status == 200
        assert body == {"symbols": sorted({r.symbol for r in expected})}
        for symbol in body["symbols"]:
            rows = [r for r in expected if r.symbol == symbol]
            status, body = await get(session, f"{server.url}api/minutes?symbol={symbol}&last=600")
            assert status == 200, body
            assert body["count"] == len(rows) > 0
            assert body["newest"] == rows[-1].timestamp
            assert body["columns"] == columns_of(rows)


async def test_every_value_exact_sqlite(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    await check_every_value(f"sqlite:///{tmp_path}/t.db", session)


@pytest.mark.mysql
async def test_every_value_exact_mysql(mysql_db: str, session: aiohttp.ClientSession) -> None:
    await check_every_value(mysql_db, session)


async def test_ranges_and_bad_parameters(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    trades = synthetic_trades(30)
    load(url, trades)
    rows = expected_rows(trades)
    assert len(rows) == 30
    async with DashboardServer(open_reader(url), "127.0.0.1:0") as server:
        api = server.url + "api/minutes?symbol=btcusdt"
        status, body = await get(session, api + "&last=5")
        assert status == 200
        assert body["columns"]["timestamp"] == [r.timestamp for r in rows[-5:]]
        assert (body["from"], body["to"]) == (rows[-5].timestamp, rows[-1].timestamp)
        # an explicit range is inclusive at both ends; ISO and space forms both work
        start, end = rows[3].timestamp, rows[9].timestamp
        status, body = await get(session, f"{api}&from={start[:16]}&to={end[:10]}T{end[11:16]}")
        assert status == 200
        assert body["columns"] == columns_of(rows[3:10])
        status, body = await get(session, api + "&from=2000-01-01 00:00")
        assert body["count"] == 30
        # a symbol without rows is an empty answer, not an error
        status, body = await get(session, server.url + "api/minutes?symbol=NOPEUSDT")
        assert (status, body["count"], body["newest"]) == (200, 0, None)
        for query, named in [
            ("", "symbol="),
            ("symbol=BTC-USDT", "symbol="),
            ("symbol=BTCUSDT&last=0", "last="),
            ("symbol=BTCUSDT&last=x", "last="),
            ("symbol=BTCUSDT&from=yesterday", "from="),
            ("symbol=BTCUSDT&from=2024-11-24 01:00&to=2024-11-24 00:00", "after"),
        ]:
            status, body = await get(session, f"{server.url}api/minutes?{query}")
            assert status == 400, query
            assert named in body["error"], (query, body)


async def test_database_trouble_is_reported_not_fatal(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    path = tmp_path / "later.db"
    async with DashboardServer(open_reader(f"sqlite:///{path}"), "127.0.0.1:0") as server:
        status, body = await get(session, server.url + "api/symbols")
        assert status == 503
        assert "does not exist" in body["error"]
        # the file exists but has no table yet
        sqlite3.connect(path).close()
        status, body = await get(session, server.url + "api/minutes?symbol=BTCUSDT")
        assert status == 503
        assert "no such table: trade_minutes" in body["error"]
        async with session.get(server.url + "healthz") as response:
            assert response.status == 503
        # a value that is not a decimal is reported, naming the column
        load(f"sqlite:///{path}", synthetic_trades(1))
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE trade_minutes SET total_btc_b = 'abc'")
        status, body = await get(session, server.url + "api/minutes?symbol=BTCUSDT")
        assert status == 503
        assert "total_btc_b holds 'abc', not a decimal" in body["error"]
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE trade_minutes SET total_btc_b = '0.10000000'")
        status, body = await get(session, server.url + "api/minutes?symbol=BTCUSDT")
        assert status == 200
        assert body["columns"]["total_btc_b"] == ["0.10000000"]
        async with session.get(server.url + "healthz") as response:
            assert response.status == 200


async def test_mysql_unreachable_is_a_503(session: aiohttp.ClientSession) -> None:
    reader = open_reader(f"mysql://u:secret@127.0.0.1:{closed_port()}/db")
    async with DashboardServer(reader, "127.0.0.1:0") as server:
        status, body = await get(session, server.url + "api/symbols")
    assert status == 503
    assert "Can't connect to MySQL server" in body["error"]
    assert "secret" not in body["error"]


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_page_and_local_plotly(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    import plotly

    async with DashboardServer(open_reader(f"sqlite:///{tmp_path}/x.db"), "127.0.0.1:0") as server:
        async with session.get(server.url) as response:
            page = await response.text()
            assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert '<script src="/static/plotly.min.js"' in page
        assert "http://" not in page and "https://" not in page  # nothing from elsewhere
        sizes = {}
        for name in ("plotly.min.js", "dashboard.js", "dashboard.css"):
            async with session.get(
                server.url + "static/" + name,
                headers={"Accept-Encoding": "gzip"},
                auto_decompress=False,
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Encoding"] == "gzip"
                sizes[name] = len(await response.read())
        async with session.get(server.url + "static/plotly.min.js") as response:
            body = await response.read()
        shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        assert body == await asyncio.to_thread(shipped.read_bytes)
        assert gzip.compress(body) and sizes["plotly.min.js"] < len(body) / 2
        async with session.get(server.url + "static/../../etc/passwd") as response:
            assert response.status == 404


def test_floats_are_refused_never_rounded() -> None:
    raw = ["BTCUSDT", "2024-11-24 00:00:00", 1, 0, 0.1, "0", "0", "0", None, None, 1, 0, 5, 5]
    raw += ["1", "1", "1", "1"]
    raw += [None] * len(FLOW_COLUMNS)  # a row from before the order-flow columns
    with pytest.raises(QueryError, match="total_btc_b holds a float"):
        row_texts(raw)
    raw[4] = Decimal("0.1")  # what MySQL's DECIMAL gives
    assert row_texts(raw)["total_btc_b"] == "0.10000000"


def test_integers_beyond_javascripts_exact_range_are_sent_as_text() -> None:
    raw = ["BTCUSDT", "2024-11-24 00:00:00", 1, 0, "1", "0", "0", "0", None, None]
    raw += [2**53, 0, 2**53 - 1, 2**53 - 1, "1", "1", "1", "1"]
    raw += [None] * len(FLOW_COLUMNS)
    row = row_texts(raw)
    assert row["trades_b"] == "9007199254740992" and row["first_agg_id"] == 2**53 - 1
    assert msgspec.json.decode(msgspec.json.encode(row))["last_agg_id"] == 9007199254740991
