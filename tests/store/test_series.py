"""The derived series (store/series.py), computed in SQL on SQLite and MariaDB, against a
direct computation in Python ``Decimal`` over the rows the core aggregates."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from tests.dashboard.helpers import expected_rows, synthetic_trades

from tradepipe.core import FLOW_COLUMNS, Row
from tradepipe.store import MinuteReads, Store, connect, parse_db_url
from tradepipe.store.series import EXACT_SERIES, RATIO_SERIES

MIDNIGHT = 1_732_406_400_000  # 2024-11-24 00:00 UTC
TRADES = synthetic_trades(20, start_ms=MIDNIGHT - 10 * 60_000)  # 23:50 .. 00:09
ROWS = expected_rows(TRADES)


def direct(rows: list[Row], start: str, end: str) -> list[dict[str, object]]:
    """Each formula of store/series.py's header, written out over the core's rows."""
    out: list[dict[str, object]] = []
    day: dict[str, tuple[Decimal, Decimal]] = {}
    range_base = range_quote = Decimal(0)
    for r in rows:
        d_base, d_quote = r.total_btc_b - r.total_btc_s, r.total_usd_b - r.total_usd_s
        cb, cq = day.get(r.timestamp[:10], (Decimal(0), Decimal(0)))
        day[r.timestamp[:10]] = (cb + d_base, cq + d_quote)
        if not start <= r.timestamp <= end:
            continue
        range_base, range_quote = range_base + d_base, range_quote + d_quote
        volume = r.total_usd_b + r.total_usd_s
        flow = r.flow.values() if r.flow is not None else None
        whale = (
            None
            if flow is None
            else sum(
                Decimal(flow[c])
                for c in ("usd_100k_1m_b", "usd_ge1m_b", "usd_100k_1m_s", "usd_ge1m_s")
            )
        )
        out.append(
            {
                "timestamp": r.timestamp,
                "delta_base": d_base,
                "delta_quote": d_quote,
                "cvd_day_base": cb + d_base,
                "cvd_day_quote": cq + d_quote,
                "cvd_range_base": range_base,
                "cvd_range_quote": range_quote,
                "imbalance": float(d_quote / volume) if volume else None,
                "whale_share": float(whale / volume) if whale is not None and volume else None,
                "ret": float(r.close / r.open - 1),
            }
        )
    return out


def check(got: list[dict[str, object]], want: list[dict[str, object]]) -> None:
    assert [g["timestamp"] for g in got] == [w["timestamp"] for w in want]
    for g, w in zip(got, want, strict=True):
        for name in EXACT_SERIES:
            assert isinstance(g[name], str) and Decimal(str(g[name])) == w[name], (
                g["timestamp"],
                name,
            )
        for name in RATIO_SERIES:
            if w[name] is None:
                assert g[name] is None, (g["timestamp"], name)
            else:
                assert isinstance(g[name], float)
                assert math.isclose(g[name], w[name], rel_tol=1e-12, abs_tol=1e-15), (
                    g["timestamp"],
                    name,
                )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-11-23 23:50:00", "2024-11-24 00:09:00"),  # all: the day CVD resets at 00:00
        ("2024-11-23 23:55:00", "2024-11-24 00:04:00"),  # the day CVD counts 23:50-23:54 too
        ("2024-11-24 00:03:00", "2024-11-24 00:07:00"),
        ("2024-11-24 00:05:00", "2024-11-24 00:05:00"),
        ("2030-01-01 00:00:00", "2030-01-01 01:00:00"),  # nothing
    ],
)
def test_series_equal_the_direct_computation(db_url: str, start: str, end: str) -> None:
    Store(db_url).upsert(TRADES)
    reads = MinuteReads(parse_db_url(db_url))
    try:
        got = reads.series("BTCUSDT", start, end)
    finally:
        reads.close()
    want = direct(ROWS, start, end)
    check(got, want)  # type: ignore[arg-type]
    if start.startswith("2024"):
        assert want and any(w["whale_share"] for w in want)  # the whale buckets are exercised
    midnight = [g for g in got if g["timestamp"] == "2024-11-24 00:00:00"]
    for g in midnight:  # the reset: the day's first CVD is that minute's delta
        assert g["cvd_day_quote"] == g["delta_quote"]


def test_rows_before_the_order_flow_columns_have_no_whale_share(db_url: str) -> None:
    Store(db_url).upsert(TRADES)
    conn = connect(parse_db_url(db_url))
    try:
        with conn.transaction():
            sets = ", ".join(f"{conn.quote(c)} = NULL" for c in FLOW_COLUMNS)
            conn.query(f"UPDATE trade_minutes SET {sets}")
    finally:
        conn.close()
    reads = MinuteReads(parse_db_url(db_url))
    try:
        got = reads.series("BTCUSDT", "2024-11-23 23:50:00", "2024-11-24 00:09:00")
    finally:
        reads.close()
    assert len(got) == 20
    assert all(g["whale_share"] is None and g["imbalance"] is not None for g in got)
