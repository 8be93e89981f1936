"""The order-flow columns against an independent tally over raw trades (core/flow.py).

The tally here reads the raw JSON with the standard library and buckets each notional with its
own table of bounds, so a wrong bound, a bucket off by one at a bound, a side swapped or a sum
rounded in the core shows up as a difference.
"""

from __future__ import annotations

import decimal
import gzip
import itertools
import json
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import unavailable
from tests.core.helpers import BASE_T, line

from tradepipe.core import (
    BUCKETS,
    FLOW_COLUMNS,
    MinutePartial,
    Trade,
    aggregate,
    aggregate_file,
    merge_all,
    parse_event,
    rows_of,
)
from tradepipe.core.aggregate import Aggregator, merge_flows
from tradepipe.core.flow import bucket_of

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "binance"
# The test's own statement of the bounds (docs/orderflow.md): [lower, upper) in quote units.
TABLE = [
    ("lt1k", Decimal(0), Decimal(1_000)),
    ("1k_10k", Decimal(1_000), Decimal(10_000)),
    ("10k_100k", Decimal(10_000), Decimal(100_000)),
    ("100k_1m", Decimal(100_000), Decimal(1_000_000)),
    ("ge1m", Decimal(1_000_000), None),
]


def tally(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Decimal]]:
    """(symbol, minute text) -> every flow column, from raw events, first occurrence of an id."""
    with decimal.localcontext(decimal.Context(prec=200, traps=[decimal.Inexact])):
        return _tally(events)


def _tally(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Decimal]]:
    out: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(
        lambda: dict.fromkeys(FLOW_COLUMNS, Decimal(0))
    )
    seen: set[tuple[str, int]] = set()
    for ev in events:
        if (ev["s"], ev["a"]) in seen:
            continue
        seen.add((ev["s"], ev["a"]))
        minute = ev["T"] // 60_000 * 60_000
        row = out[(ev["s"], str(minute))]
        side = "s" if ev["m"] else "b"
        notional = Decimal(ev["p"]) * Decimal(ev["q"])
        (name,) = [n for n, lo, hi in TABLE if lo <= notional and (hi is None or notional < hi)]
        row[f"count_{name}_{side}"] += 1
        row[f"usd_{name}_{side}"] += notional
        row[f"max_usd_{side}"] = max(row[f"max_usd_{side}"], notional)
    return dict(out)


def flows_of(
    parts: dict[tuple[str, int], MinutePartial],
) -> dict[tuple[str, str], dict[str, Decimal]]:
    out = {}
    for (symbol, minute), p in parts.items():
        assert p.flow is not None
        out[(symbol, str(minute))] = {k: Decimal(v) for k, v in p.flow.values().items()}
    return out


def recorded() -> list[Path]:
    files = sorted(DATA.glob("*.aggTrade.ndjson"))
    if not files:
        unavailable(f"the recorded aggTrades in {DATA}")
    return files


def test_recorded_data_equals_the_tally_on_both_paths() -> None:
    samples = sorted((ROOT / "samples").glob("*.ndjson.gz"))
    assert samples
    checked = 0
    for path in [*recorded(), *samples]:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            events = [json.loads(x) for x in fh if x.strip()]
        events = [e.get("data", e) for e in events]
        events = [e for e in events if e.get("e", "aggTrade") == "aggTrade" and "a" in e]
        expected = tally(events)
        agg = Aggregator()
        assert list(aggregate_file(path, agg)) == []  # the bulk path of `aggregate`
        assert flows_of(agg.result()) == expected, path.name
        trades = [parse_event(json.dumps(e).encode()) for e in events]
        assert flows_of(aggregate(trades)) == expected, path.name  # the Trade path
        checked += len(events)
    assert checked > 80_000


def test_trades_on_every_bound() -> None:
    """A notional exactly on a bound is in the upper bucket; one unit of 1e-8 below, the lower."""
    specs = []
    a = 1
    for _, lo, _ in TABLE[1:]:
        for qty in ("1", "0.99999999"):  # price = the bound: notional = bound, or just below
            for m in (False, True):
                specs.append((a, str(lo), qty, m))
                a += 1
    specs.append((a, "0.00000001", "0.00000001", False))  # the smallest notional there is
    specs.append((a + 1, "99999999999.99999999", "99999999999.99999999", True))  # a huge one
    events = [json.loads(line(a=i, p=p, q=q, f=i, l=i, T=BASE_T + i, m=m)) for i, p, q, m in specs]
    trades = [parse_event(json.dumps(e).encode()) for e in events]
    got = flows_of(aggregate(trades))
    assert got == tally(events)
    (row,) = got.values()
    for name, lo, _ in TABLE[1:]:
        below = TABLE[[n for n, *_ in TABLE].index(name) - 1][0]
        assert bucket_of(lo) == name and bucket_of(lo - Decimal("1e-8")) == below
    assert row["count_ge1m_s"] == 2 and row["count_lt1k_b"] == 2  # 1M x 1, the huge; 1k-, tiny
    assert row["max_usd_s"] == Decimal("9999999999999999998000.0000000000000001")  # exact


def test_buckets_add_up_to_the_side_totals() -> None:
    rng = random.Random(17)
    trades = []
    for a in range(2_000):
        price = Decimal(rng.randint(1, 10**13)).scaleb(-8)
        qty = Decimal(rng.randint(1, 10**11)).scaleb(-8)
        trades.append(Trade("BTCUSDT", a, price, qty, a, a, BASE_T + a * 97, rng.random() < 0.5))
    for row in rows_of(aggregate(trades).values()):
        assert row.flow is not None
        assert sum(row.flow.counts_b) == row.total_count_b
        assert sum(row.flow.counts_s) == row.total_count_s
        assert sum(row.flow.usd_b) == row.total_usd_b
        assert sum(row.flow.usd_s) == row.total_usd_s


prices = st.integers(1, 10**13).map(lambda n: Decimal(n).scaleb(-8))


@given(st.lists(st.tuples(prices, prices, st.booleans()), min_size=1, max_size=30), st.randoms())
@settings(max_examples=200, deadline=None)
def test_merges_in_any_order_give_the_same_flow(
    specs: list[tuple[Decimal, Decimal, bool]], rnd: random.Random
) -> None:
    trades = [Trade("X", a, p, q, a, a, BASE_T + a, m) for a, (p, q, m) in enumerate(specs)]
    whole = aggregate(trades)
    shuffled = list(trades)
    rnd.shuffle(shuffled)
    cuts = sorted(rnd.randint(0, len(trades)) for _ in range(3))
    parts = [aggregate(shuffled[i:j]) for i, j in itertools.pairwise([0, *cuts, len(trades)])]
    rnd.shuffle(parts)
    out: dict[tuple[str, int], MinutePartial] = {}
    for part in parts:
        merge_all(out, part)
    assert out == whole


def test_unknown_flow_stays_unknown() -> None:
    (part,) = aggregate([parse_event(line(a=1, f=1, l=1))]).values()
    assert part.flow is not None
    assert merge_flows(None, part.flow) is None and merge_flows(part.flow, None) is None
    assert merge_flows(part.flow, part.flow) is not None


@pytest.mark.parametrize("name", BUCKETS)
def test_bucket_names_are_columns(name: str) -> None:
    assert {f"count_{name}_b", f"count_{name}_s", f"usd_{name}_b", f"usd_{name}_s"} <= set(
        FLOW_COLUMNS
    )
