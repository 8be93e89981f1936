"""The pure checks: Binance's recorded klines against our exact aggregates, the quote-volume
rounding rule, continuity holes and the status of each minute."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest
from tests.store.helpers import BINANCE, data_file, real_trades

from tradepipe.core import MINUTE_MS, IdRanges, MinutePartial, aggregate
from tradepipe.core.checks import (
    Kline,
    KlineError,
    Status,
    classify,
    compare,
    holes,
    kline_of_partial,
    kline_of_rest,
    kline_of_stream,
    quote_matches,
)

KLINES = "cryptofeed-BINANCE-ee25be.btcusdt.kline_1m.ndjson"


def recorded_klines() -> list[dict[str, object]]:
    return [json.loads(line)["k"] for line in data_file(KLINES).read_text().splitlines()]


def test_every_recorded_kline_update_equals_our_aggregate_of_its_trades() -> None:
    """Each update of the 20:04 kline counts the minute's trades up to its last trade id ``L``:
    aggregating exactly those gives every figure, quote volumes to the last digit."""
    trades = real_trades()
    compared = 0
    for k in recorded_klines():
        if k["t"] != 1617566640000:
            continue
        counted = [t for t in trades if t.time_ms >= k["t"] and t.last_id <= k["L"]]  # type: ignore[operator]
        (partial,) = aggregate(counted).values()
        assert compare(kline_of_partial(partial), kline_of_stream(k)) == [], k["L"]
        compared += 1
    assert compared >= 15


def test_the_partly_recorded_minute_is_a_mismatch_naming_the_figures() -> None:
    """The closed 20:03 kline has 1,020 trades; the recording starts at 20:03:11 (794)."""
    closed = next(k for k in recorded_klines() if k["x"])
    (partial,) = aggregate(t for t in real_trades() if t.time_ms < 1617566640000).values()
    diffs = {d.figure: (d.ours, d.exchange) for d in compare(kline_of_partial(partial),
                                                              kline_of_stream(closed))}  # fmt: skip
    assert diffs["trades"] == (794, 1020)
    # the last trade is recorded (its id is the kline's L): close, high and low agree
    assert set(diffs) == {"trades", "volume", "quote_volume", "taker_buy_volume",
                          "taker_buy_quote_volume", "open"}  # fmt: skip


def test_rest_klines_parse_and_bad_ones_are_refused() -> None:
    raw = json.loads((BINANCE / "nautilus-binance-spot_market_klines.json").read_text())
    k = kline_of_rest(raw[0])
    assert (k.open_ms, k.trades, k.quote_volume) == (1634943780000, 617, Decimal("1313200.0134041"))
    assert kline_of_rest(k.rest_array()) == k
    for bad in (
        [1, 2],
        {"t": 1},
        [*raw[0][:8], -1, *raw[0][9:]],
        [*raw[0][:5], "1e3", *raw[0][6:]],
    ):
        with pytest.raises(KlineError):
            kline_of_rest(bad)


@pytest.mark.parametrize(
    ("ours", "exchange", "trades", "same"),
    [
        ("12.34567890", "12.3456789", 1, True),  # fits 8 places: exact
        ("12.34567890", "12.34567891", 100, False),  # fits 8 places: one unit off is off
        ("12.345678905", "12.34567891", 1, True),  # 9 places: within one rounding
        ("12.345678905", "12.34567890", 1, True),
        ("12.345678905", "12.34567892", 1, False),
        ("12.3456789051", "12.34567893", 3, True),  # three fills: three roundings
        ("12.3456789051", "12.34567895", 3, False),
        # 40 integer digits and 16 places, past the default 28-digit context
        (
            "1234567890123456789012345678901234567890.1234567800000000",
            "1234567890123456789012345678901234567890.12345678",
            1,
            True,
        ),
        (
            "1234567890123456789012345678901234567890.1234567800000001",
            "1234567890123456789012345678901234567890.12345679",
            1,
            True,
        ),
        (
            "1234567890123456789012345678901234567890.1234567800000001",
            "1234567890123456789012345678901234567890.12345681",
            1,
            False,
        ),
    ],
)
def test_quote_volumes_compare_exactly_or_within_one_rounding_per_trade(
    ours: str, exchange: str, trades: int, same: bool
) -> None:
    assert quote_matches(Decimal(ours), Decimal(exchange), trades) is same


def _partial(minute: int, ids: str) -> MinutePartial:
    (p,) = aggregate(real_trades()[:1]).values()
    parsed = IdRanges.parse(ids)
    return replace(p, minute_ms=minute * MINUTE_MS, ids=parsed,
                   first_id=parsed.ranges[0][0], last_id=parsed.ranges[-1][1])  # fmt: skip


def test_holes_inside_rows_and_between_them() -> None:
    rows = [_partial(1, "10-19"), _partial(2, "20-24,27-30"), _partial(5, "40-49")]
    found = [(h.first, h.last, h.minutes, h.inside) for h in holes("X", rows)]
    assert found == [
        (25, 26, (2 * MINUTE_MS,), True),
        (31, 39, tuple(m * MINUTE_MS for m in (2, 3, 4, 5)), False),
    ]


def test_a_gap_between_rows_that_both_match_is_still_a_hole() -> None:
    a, b = _partial(1, "10-19"), _partial(2, "25-30")
    rows = {1 * MINUTE_MS: a, 2 * MINUTE_MS: b}
    klines: dict[int, Kline] = {m: kline_of_partial(p) for m, p in rows.items()}
    checks = classify("X", [MINUTE_MS, 2 * MINUTE_MS], rows, klines)
    assert [c.status for c in checks] == [Status.EXACT, Status.HOLE]
    assert [(h.first, h.last) for h in checks[1].holes] == [(20, 24)]
