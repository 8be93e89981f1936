"""Smoke: the MariaDB server of scripts/stack works with aiomysql, exact decimals included."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import unquote, urlsplit

import aiomysql
import pytest

pytestmark = pytest.mark.mysql


def connect_kwargs(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/"),
    }


async def test_create_insert_upsert_select(mysql_db: str) -> None:
    conn = await aiomysql.connect(**connect_kwargs(mysql_db), autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "CREATE TABLE minutes ("
                " symbol VARCHAR(20) NOT NULL, ts DATETIME NOT NULL,"
                " usd DECIMAL(38, 16) NOT NULL, n INT NOT NULL,"
                " PRIMARY KEY (symbol, ts))"
            )
            upsert = (
                "INSERT INTO minutes (symbol, ts, usd, n) VALUES (%s, %s, %s, %s)"
                " ON DUPLICATE KEY UPDATE usd = usd + VALUES(usd), n = n + VALUES(n)"
            )
            row = (
                "BTCUSDT",
                "2026-11-24 06:48:00",
                Decimal("97123.45000000") * Decimal("0.00012"),
                1,
            )
            await cur.execute(upsert, row)
            await cur.execute(upsert, row)  # MariaDB: VALUES(col), not MySQL 8's "AS new"
            await cur.execute("SELECT symbol, ts, usd, n FROM minutes")
            rows = await cur.fetchall()
    finally:
        conn.close()
    [(symbol, ts, usd, n)] = rows
    assert (symbol, str(ts), n) == ("BTCUSDT", "2026-11-24 06:48:00", 2)
    assert usd == Decimal("23.3096280000000000")  # 2 x 11.654814, exact
