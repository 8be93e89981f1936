"""The bulk path (aggregate_lines: no Trade per line) gives what iter_trades + aggregate give."""

from __future__ import annotations

import io
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.core.helpers import BASE_T, event

from tradepipe.core import Rejected, Trade, aggregate, iter_trades
from tradepipe.core.aggregate import Aggregator
from tradepipe.core.sources import aggregate_lines

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
