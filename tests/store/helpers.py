"""Shared builders for store and Lambda tests: real recorded trades, expected rows, S3 events."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import sys
import urllib.parse
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.conftest import unavailable

from tradepipe.core import Trade, aggregate, read_file, rows_of, to_event
from tradepipe.store import MysqlUrl, connect, fetch_texts, migrate, parse_db_url

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
BINANCE = DATA / "binance"
BTC_FILE = "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson"
ETH_FILE = "cryptofeed-BINANCE-ee25be.ethusdt.aggTrade.ndjson"
HANDLER = ROOT / "lambda" / "handler.py"
S3_EXAMPLE = DATA / "s3-events" / "aws-lambda-developer-guide.with-s3.example-event.json"


def data_file(name: str) -> Path:
    path = BINANCE / name if not name.startswith("s3-events") else DATA / name
    if not path.exists():
        unavailable(f"recorded data {path} is absent (see ../shared/data/README.md)")
    return path


def real_trades(name: str = BTC_FILE) -> list[Trade]:
    """Every trade of a recorded file, in file order."""
    return [t for t in read_file(data_file(name)) if isinstance(t, Trade)]


def expected(trades: Iterable[Trade]) -> list[tuple[str, ...]]:
    """The rows aggregating ``trades`` once gives, as contract text (the oracle)."""
    return [row.texts() for row in rows_of(aggregate(trades).values())]


def ndjson(trades: Iterable[Trade]) -> bytes:
    return b"".join(json.dumps(to_event(t)).encode() + b"\n" for t in trades)


def migrated(url: str) -> str:
    conn = connect(parse_db_url(url))
    try:
        migrate(conn)
    finally:
        conn.close()
    return url


def s3_event(
    bucket: str, keys: Sequence[str], sizes: Sequence[int] | None = None
) -> dict[str, Any]:
    """An ObjectCreated:Put event shaped exactly like S3's (AWS's documented example), one
    record per key; keys are URL-encoded the way S3 encodes them (``+`` for space, ``%xx``)."""
    template = json.loads(data_file("s3-events/" + S3_EXAMPLE.name).read_text())
    base = template["Records"][0]
    records = []
    for i, key in enumerate(keys):
        record = copy.deepcopy(base)
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        record["s3"]["object"]["key"] = urllib.parse.quote_plus(key, safe="/")
        record["s3"]["object"]["size"] = sizes[i] if sizes else 0
        record["s3"]["object"]["sequencer"] = f"{i:018X}"
        records.append(record)
    return {"Records": records}


MINUTE = 1_732_406_400_000  # 2024-11-24 00:00:00 UTC


def stored(url: str) -> list[tuple[str, ...]]:
    conn = connect(parse_db_url(url))
    try:
        return fetch_texts(conn)
    finally:
        conn.close()


def hand_trade(a: int, p: str, q: str, f: int, l: int, dt_ms: int, m: bool) -> Trade:  # noqa: E741
    return Trade("BTCUSDT", a, Decimal(p), Decimal(q), f, l, MINUTE + dt_ms, m)


def small_flow(
    max_b: str, max_s: str, n_b: int, n_s: int, usd_b: str, usd_s: str
) -> tuple[str, ...]:
    """The order-flow texts of a minute whose every trade is under 1k quote units."""
    zero16 = "0.0000000000000000"
    other = ("0", "0", zero16, zero16) * 4
    return (max_b, max_s, str(n_b), str(n_s), usd_b, usd_s, *other)


# A hand-checked example: four trades over two minutes and the rows they must give.
HAND = [
    hand_trade(10, "100.5", "2", 1, 3, 1_000, False),  # buy 3 trades
    hand_trade(11, "101", "0.5", 4, 4, 2_000, True),  # sell
    hand_trade(12, "99.25", "1", 5, 6, 59_999, False),  # buy, last ms of the minute
    hand_trade(13, "98", "0.1", 7, 7, 60_000, True),  # sell, first ms of the next minute
]
HAND_ROWS = [
    (
        "BTCUSDT", "2024-11-24 00:00:00", "2", "1", "3.00000000", "0.50000000",
        "300.2500000000000000", "50.5000000000000000", "100.08333333", "101.00000000",
        "5", "1", "10", "12", "100.50000000", "101.00000000", "99.25000000", "99.25000000",
        *small_flow("201.0000000000000000", "50.5000000000000000", 2, 1,
                    "300.2500000000000000", "50.5000000000000000"),
    ),
    (
        "BTCUSDT", "2024-11-24 00:01:00", "0", "1", "0.00000000", "0.10000000",
        "0.0000000000000000", "9.8000000000000000", "", "98.00000000",
        "0", "1", "13", "13", "98.00000000", "98.00000000", "98.00000000", "98.00000000",
        *small_flow("0.0000000000000000", "9.8000000000000000", 0, 1,
                    "0.0000000000000000", "9.8000000000000000"),
    ),
]  # fmt: skip


def load_handler() -> ModuleType:
    """A fresh import of lambda/handler.py: a cold start (no warm connection or config)."""
    logging.getLogger("tradepipe.lambda").handlers.clear()  # rebinds to this test's stdout
    name = f"handler_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def mysql_kwargs(url: str) -> dict[str, Any]:
    """``pymysql.connect`` keyword arguments for a ``mysql://`` URL."""
    u = parse_db_url(url)
    assert isinstance(u, MysqlUrl)
    return {
        "host": u.host,
        "port": u.port,
        "user": u.user,
        "password": u.password,
        "database": u.database,
    }
