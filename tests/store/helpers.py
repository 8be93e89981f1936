"""Shared builders for store and Lambda tests: real recorded trades, expected rows, S3 events."""

from __future__ import annotations

import copy
import json
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tradepipe.core import Trade, aggregate, read_file, rows_of, to_event
from tradepipe.store import connect, migrate, parse_db_url

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
BINANCE = DATA / "binance"
BTC_FILE = "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson"
ETH_FILE = "cryptofeed-BINANCE-ee25be.ethusdt.aggTrade.ndjson"
S3_EXAMPLE = DATA / "s3-events" / "aws-lambda-developer-guide.with-s3.example-event.json"


def data_file(name: str) -> Path:
    path = BINANCE / name if not name.startswith("s3-events") else DATA / name
    if not path.exists():
        pytest.skip(f"recorded data {path} is absent (see ../shared/data/README.md)")
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
