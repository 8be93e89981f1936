"""The bulk paths (aggregate_lines, and TradeBatch / read_batch of the Lambda and the store: no
Trade per line) give what iter_trades + aggregate give."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import unavailable
from tests.core.helpers import BASE_T, event

from tradepipe.core import Rejected, Trade, aggregate, iter_trades
from tradepipe.core.aggregate import MINUTE_MS, Aggregator
from tradepipe.core.batch import TradeBatch, read_batch
from tradepipe.core.idranges import IdRanges
from tradepipe.core.sources import aggregate_lines

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
texts = st.sampled_from(
    [
        "97123.45000000",
        "0.00000001",
        "1",
        "1.5",
        ".5",
        "5.",
        "0",
        "0.000000001",
        "1_0",
        " 1",
        "1e5",
        "-1",
        "00012.5",
        "99999999999999999999.99999999",
        "123456789012345678901",
        "١٢",
    ]
)
fields: dict[str, st.SearchStrategy[Any]] = {
    "s": st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "BTC USDT"]),
    "a": st.integers(-2, 30),
    "f": st.integers(-1, 50),
    "l": st.integers(-1, 50),
    "T": st.sampled_from([BASE_T, BASE_T + 59_999, BASE_T + 60_000, (BASE_T + 7) * 1000, 5]),
    "E": st.sampled_from([BASE_T, (BASE_T + 1) * 1000, -1]),
    "m": st.sampled_from([True, False, 1, "true"]),
    "e": st.sampled_from(["aggTrade", "trade"]),
    "p": texts,
    "q": texts,
}


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40))
    ev = event(a=draw(st.integers(0, 30)), f=5, l=draw(st.integers(5, 7)))
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3)):
        ev[name] = draw(fields[name])
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=1)):
        ev.pop(name, None)
    raw = msgspec.json.encode(ev)
    if kind == 1:
        raw = msgspec.json.encode({"stream": "btcusdt@aggTrade", "data": ev})
    return raw


@given(st.lists(lines(), max_size=40))
@settings(max_examples=400, deadline=None)
def test_fast_path_equals_ordinary_path(body: list[bytes]) -> None:
    # the first line is an event, so that both paths read the body as NDJSON, not CSV
    data = b"\n".join([msgspec.json.encode(event()), *body]).replace(b"\r", b"") + b"\n"
    ordinary = list(iter_trades(data, "x"))
    expected_rows = aggregate(t for t in ordinary if isinstance(t, Trade))
    expected_rejects = [
        (r.lineno, r.raw, r.error.reason) for r in ordinary if isinstance(r, Rejected)
    ]
    agg = Aggregator()
    rejects = list(aggregate_lines(io.BytesIO(data), "x", agg))
    assert agg.result() == expected_rows
    assert [(r.lineno, r.raw, r.error.reason) for r in rejects] == expected_rejects
    batch, batch_rejects = read_batch(data, "x")
    good = [t for t in ordinary if isinstance(t, Trade)]
    assert batch.aggregate() == expected_rows
    assert [(r.lineno, r.raw, r.error.reason) for r in batch_rejects] == expected_rejects
    assert list(batch.trades()) == good
    assert TradeBatch.of_trades(good).fields == batch.fields


HEADS = [b"\xef\xbb\xbf", b"\xef\xbb", b"\xbf", b"", b"  ", b"\r", b"\x0b", b"hello", b"[1]",
         b"\xef\xbb\xbf" + msgspec.json.encode(event(a=1)),
         b"\xef\xbb\xbfagg_trade_id,price"]  # fmt: skip


@pytest.mark.parametrize("head", HEADS)
def test_first_lines_are_read_the_same_by_both_paths(head: bytes) -> None:
    encode = msgspec.json.encode
    data = head + b"\n\n" + encode(event(a=2)) + b"\n" + encode(event(a=3)) + b"\r\n"
    ordinary = list(iter_trades(data, "BTCUSDT-aggTrades-x.csv"))
    agg = Aggregator()
    rejects = list(aggregate_lines(io.BytesIO(data), "BTCUSDT-aggTrades-x.csv", agg))
    assert agg.result() == aggregate(t for t in ordinary if isinstance(t, Trade))
    assert [(r.lineno, r.raw, r.error.reason) for r in rejects] == [
        (r.lineno, r.raw, r.error.reason) for r in ordinary if isinstance(r, Rejected)
    ]


def test_a_batch_of_the_recorded_market_aggregates_and_excludes_as_trades_do() -> None:
    paths = sorted(DATA.glob("*.aggTrade.ndjson"))
    if not paths:
        unavailable(f"the recorded aggTrades in {DATA}")
    for path in paths:
        data = path.read_bytes()
        ordinary = list(iter_trades(data, path.name))
        good = [t for t in ordinary if isinstance(t, Trade)]
        batch, rejects = read_batch(data, path.name)
        assert len(batch) == len(good) > 0
        assert len(rejects) == len(ordinary) - len(good)
        assert batch.keys() == sorted({(t.symbol, t.time_ms // MINUTE_MS * MINUTE_MS)
                                       for t in good})  # fmt: skip
        # ids already stored for every second minute: excluded the same way on both paths
        stored = {key: IdRanges.from_ids(t.agg_id for t in good if t.agg_id % 3 == 0)
                  for key in batch.keys()[::2]}  # fmt: skip
        exclude = functools.partial(lambda held, key: held.get(key, IdRanges()), stored)
        assert batch.aggregate(exclude) == aggregate(good, exclude=exclude)
        some = set(batch.keys()[1::3])
        assert batch.only(some).aggregate() == aggregate(
            t for t in good if (t.symbol, t.time_ms // MINUTE_MS * MINUTE_MS) in some
        )
