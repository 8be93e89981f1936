"""Aggregation with hand-computed expectations, and against Binance's own klines."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from tests.conftest import unavailable
from tests.core.helpers import BASE_T, line

from tradepipe.core import (
    ROW_COLUMNS,
    IdRanges,
    Row,
    Trade,
    aggregate,
    merge_all,
    parse_event,
    read_file,
    rows_of,
)
from tradepipe.core.rows import BASE_COLUMNS

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"


def trades(*specs: tuple[int, str, str, int, bool]) -> list[Trade]:
    """(agg id, price, qty, ms offset, m) -> trades with one underlying trade each."""
    return [
        parse_event(line(a=a, p=p, q=q, f=a * 10, l=a * 10, T=BASE_T + dt, m=m))
        for a, p, q, dt, m in specs
    ]


def test_hand_computed_minute() -> None:
    ts = trades(
        (1, "100.00000000", "2.00000000", 0, False),  # buy 2 @ 100
        (2, "101.00000000", "1.00000000", 10, True),  # sell 1 @ 101
        (3, "99.50000000", "0.50000000", 20, False),  # buy 0.5 @ 99.5
        (4, "100.25000000", "3.00000000", 59_999, True),  # sell 3 @ 100.25, last ms of minute
    )
    (row,) = rows_of(aggregate(ts).values())
    assert row.texts()[: len(BASE_COLUMNS)] == (
        "BTCUSDT",
        "2024-11-24 00:00:00",
        "2",
        "2",
        "2.50000000",
        "4.00000000",
        "249.7500000000000000",
        "401.7500000000000000",
        "99.90000000",
        "100.43750000",
        "2",
        "2",
        "1",
        "4",
        "100.00000000",
        "101.00000000",
        "99.50000000",
        "100.25000000",
    )
    flow = dict(
        zip(ROW_COLUMNS[len(BASE_COLUMNS) :], row.texts()[len(BASE_COLUMNS) :], strict=True)
    )
    zero, zero16 = "0", "0.0000000000000000"
    expected = {c: zero if c.startswith("count_") else zero16 for c in flow}
    expected |= {
        "max_usd_b": "200.0000000000000000",  # 2 @ 100
        "max_usd_s": "300.7500000000000000",  # 3 @ 100.25
        "count_lt1k_b": "2",
        "count_lt1k_s": "2",
        "usd_lt1k_b": "249.7500000000000000",
        "usd_lt1k_s": "401.7500000000000000",
    }
    assert flow == expected


def test_minute_boundary_59_999_vs_00_000() -> None:
    ts = trades((1, "1", "1", 59_999, False), (2, "2", "1", 60_000, False))
    parts = aggregate(ts)
    assert sorted(parts) == [("BTCUSDT", BASE_T), ("BTCUSDT", BASE_T + 60_000)]
    assert [p.count_b for p in parts.values()] == [1, 1]


def test_empty_side_has_null_average_and_open_close_by_id_not_time() -> None:
    # ids out of time order: open/close follow the lowest/highest aggregate id
    ts = trades((7, "10", "1", 30, True), (5, "12", "1", 40, True), (6, "11", "1", 10, True))
    row = Row.from_partial(aggregate(ts)[("BTCUSDT", BASE_T)])
    assert row.avg_b is None and row.avg_s == Decimal("11.00000000")
    assert (row.open, row.close, row.first_agg_id, row.last_agg_id) == (12, 10, 5, 7)
    assert row.texts()[8] == ""


def test_duplicates_in_a_batch_count_once_and_ids_are_recorded() -> None:
    ts = trades((1, "1", "1", 0, False), (2, "1", "1", 1, False), (4, "1", "1", 2, False))
    part = aggregate(ts + ts[::-1])[("BTCUSDT", BASE_T)]
    assert part.count_b == 3
    assert part.ids == IdRanges(((1, 2), (4, 4)))
    assert str(part.ids) == "1-2,4"


def test_exclude_skips_stored_ids() -> None:
    ts = trades((1, "1", "1", 0, False), (2, "1", "2", 1, False), (3, "1", "4", 2, False))
    part = aggregate(ts, exclude=lambda key: IdRanges.parse("1-2"))[("BTCUSDT", BASE_T)]
    assert (part.count_b, part.base_b, str(part.ids)) == (1, Decimal(4), "3")
    assert aggregate(ts, exclude=lambda key: IdRanges.parse("1-3")) == {}


def test_merge_refuses_overlap() -> None:
    ts = trades((1, "1", "1", 0, False), (2, "1", "1", 1, False))
    a = aggregate(ts)
    with pytest.raises(ValueError, match="overlap"):
        merge_all(dict(a), aggregate(ts[1:]))


def test_huge_and_tiny_values_stay_exact() -> None:
    ts = trades(
        (1, "99999999.99999999", "99999999.99999999", 0, False),
        (2, "0.00000001", "0.00000001", 1, False),
    )
    (row,) = rows_of(aggregate(ts).values())
    # 99999999.99999999^2 + 0.00000001^2, exact (the default 28-digit context would round it)
    assert row.texts()[6] == "9999999999999998.0000000000000002"
    assert row.texts()[4] == "100000000.00000000"
    assert "E" not in "".join(row.texts())


def test_idranges_text_round_trip() -> None:
    r = IdRanges.from_ids([5, 1, 2, 3, 9, 10])
    assert str(r) == "1-3,5,9-10" and IdRanges.parse(str(r)) == r
    assert 2 in r and 4 not in r and len(r) == 6
    assert r.isdisjoint(IdRanges.parse("4,6-8")) and not r.isdisjoint(IdRanges.parse("8-9"))


def test_matches_binance_klines() -> None:
    """An independent oracle: Binance's own 1m kline for 20:04, as of trade id 745524256.

    kline v = sum q, V = taker-buy sum q (m = false), n = sum(l - f + 1), and quote volumes
    (which Binance prints rounded to 8 places).
    """
    if not DATA.is_dir():
        unavailable("../shared/data is absent")
    klines = [
        msgspec.json.decode(x)["k"]
        for x in (DATA / "cryptofeed-BINANCE-ee25be.btcusdt.kline_1m.ndjson")
        .read_bytes()
        .split(b"\n")
        if x
    ]
    k = next(k for k in klines if k["t"] == 1617566640000 and k["L"] == 745524256)
    items = read_file(DATA / "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson")
    covered = [
        t for t in items if isinstance(t, Trade) and k["f"] <= t.first_id and t.last_id <= k["L"]
    ]
    part = aggregate(covered)[("BTCUSDT", 1617566640000)]
    assert part.trades_b + part.trades_s == k["n"]
    assert part.base_b == Decimal(k["V"])
    assert part.base_b + part.base_s == Decimal(k["v"])
    assert abs(part.quote_b - Decimal(k["Q"])) < Decimal("1e-8")
    assert abs(part.quote_b + part.quote_s - Decimal(k["q"])) < Decimal("1e-8")
    assert (part.open, part.high, part.low) == (Decimal(k["o"]), Decimal(k["h"]), Decimal(k["l"]))
