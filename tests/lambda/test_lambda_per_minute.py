"""lambda/handler.py on per-minute objects (``sink.layout = "per_minute"``): keys without a
symbol, each object holding several symbols' trades, against the real S3 server and MariaDB."""

from __future__ import annotations

import gzip
from types import ModuleType
from typing import Any

from tests.store.helpers import BTC_FILE, ETH_FILE, expected, ndjson, real_trades, s3_event, stored

from tradepipe.core import MINUTE_MS, Trade, parse_key, sink_object_name

DOT_FILE = "cryptofeed-BINANCE-ee25be.dotusdt.aggTrade.ndjson"


def market() -> list[Trade]:
    trades = [t for name in (BTC_FILE, ETH_FILE, DOT_FILE) for t in real_trades(name)]
    return sorted(trades, key=lambda t: (t.time_ms, t.symbol))


def per_minute_key(minute_ms: int, first_offset: int) -> str:
    minute = (minute_ms // MINUTE_MS) % 60
    name = sink_object_name("aggtrades", 0, first_offset, first_offset + 999)
    return f"trades/date=2021-04-04/hour=20/minute={minute:02d}/{name}"


def test_per_minute_objects_of_three_symbols(
    handler: ModuleType, s3: Any, bucket: str, db: str
) -> None:
    trades = market()
    minutes = sorted({t.time_ms - t.time_ms % MINUTE_MS for t in trades})
    keys = []
    for i, minute in enumerate(minutes):
        chunk = [t for t in trades if t.time_ms - t.time_ms % MINUTE_MS == minute]
        assert {t.symbol for t in chunk} == {"BTCUSDT", "ETHUSDT", "DOTUSDT"}
        key = per_minute_key(minute, i * 10_000)
        assert parse_key(key).symbol is None and parse_key(key).minute_ms == minute
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(ndjson(chunk)))
        keys.append(key)
    # the key's "+" arrives as %2B; every symbol of the object is stored, none refused
    summary = handler.handler(s3_event(bucket, keys), None)
    assert summary == {"objects": len(keys), "trades": len(trades), "added": len(trades),
                       "rejected": 0}  # fmt: skip
    assert stored(db) == expected(trades)
    # delivered again, in reverse: nothing changes
    again = handler.handler(s3_event(bucket, list(reversed(keys))), None)
    assert again["added"] == 0
    assert stored(db) == expected(trades)
