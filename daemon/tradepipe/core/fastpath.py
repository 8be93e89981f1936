"""The fast path for NDJSON bodies: decode, validate and aggregate without building Trades.

Bulk inputs (``tradepipe aggregate``, benchmarks, local files) spend most of their time
turning each line into a validated :class:`Trade` only to take it apart again. Here msgspec
decodes a line straight into a small struct and checks types, id signs and time range in C;
prices and quantities go from text to integers scaled by 1e8 (cached: prices repeat).

The fast path is *conservative*: it only accepts lines that are certainly valid under the
rules of :mod:`tradepipe.core.trade` — ms timestamps, plain decimal text, an ``s`` that an
earlier line already proved valid. Any other line takes the ordinary path
(:func:`parse_event`), which accepts it or rejects it with its precise reason. So both paths
give the same rows and the same rejects (a property test checks this), only faster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import msgspec

from tradepipe.core.aggregate import Aggregator
from tradepipe.core.errors import ParseError
from tradepipe.core.parse import parse_event
from tradepipe.core.sources import Rejected, is_csv, iter_trades, open_body, streamed
from tradepipe.core.trade import (
    MAX_DECIMAL_PLACES,
    MAX_INTEGER_DIGITS,
    MAX_TIME_MS,
    MIN_TIME_MS,
    Trade,
)

_Id = Annotated[int, msgspec.Meta(ge=0)]
_Ms = Annotated[int, msgspec.Meta(ge=MIN_TIME_MS, lt=MAX_TIME_MS)]
_POW10 = [10 ** (MAX_DECIMAL_PLACES - n) for n in range(MAX_DECIMAL_PLACES + 1)]
_CACHE_LIMIT = 1 << 16


class _FastWire(msgspec.Struct, frozen=True, gc=False):
    s: str
    a: _Id
    p: str
    q: str
    f: _Id
    l: _Id  # noqa: E741 - Binance's field name
    T: _Ms
    m: bool
    e: str = "aggTrade"
    E: _Ms | None = None


_decode = msgspec.json.Decoder(_FastWire).decode


def _scaled(text: str) -> int:
    """Plain decimal text -> integer x 1e8; 0 when the text needs the ordinary path."""
    digits = text.replace(".", "", 1)
    if not (digits.isdigit() and digits.isascii()):  # only 0-9 and at most one dot
        return 0
    dot = text.find(".")
    if dot < 0:
        whole: int = int(digits) * _POW10[0] if len(digits) <= MAX_INTEGER_DIGITS else 0
        return whole
    places = len(digits) - dot
    if dot == 0 or places == 0 or places > MAX_DECIMAL_PLACES or dot > MAX_INTEGER_DIGITS:
        return 0
    scaled: int = int(digits) * _POW10[places]
    return scaled


def aggregate_ndjson(lines: Iterable[bytes], source: str, agg: Aggregator) -> Iterator[Rejected]:
    """Add every good line to ``agg``; yield a :class:`Rejected` for every bad one."""
    known_symbols: set[str] = set()
    prices: dict[str, int] = {}  # prices repeat a lot
    add = agg.add
    for lineno, line in enumerate(lines, 1):
        try:
            w = _decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            if w.e == "aggTrade" and w.s in known_symbols and w.f <= w.l:
                p8 = prices.get(w.p)
                if p8 is None:
                    p8 = _scaled(w.p)
                    if len(prices) > _CACHE_LIMIT:
                        prices.clear()
                    prices[w.p] = p8
                q8 = _scaled(w.q)  # quantities rarely repeat: not worth caching
                if p8 and q8:
                    add(w.s, w.T, w.a, p8, q8, w.l - w.f + 1, w.m)
                    continue
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            trade = parse_event(line)
        except ParseError as exc:
            yield Rejected(source, lineno, line, exc)
            continue
        known_symbols.add(trade.symbol)
        agg.add_trade(trade)


def aggregate_file(
    path: str | Path, agg: Aggregator, symbol: str | None = None
) -> Iterator[Rejected]:
    """Stream a file (NDJSON or data-dump CSV, gzip or not) into ``agg``; yield its rejects.

    Opening errors raise :class:`SourceError` immediately, not on first iteration.
    """
    source = str(path)
    fh = open_body(path, symbol)
    head = fh.read(64)
    fh.seek(0)
    if is_csv(head):
        return streamed(fh, source, _csv_into(iter_trades(fh, source, symbol), agg))
    return streamed(fh, source, aggregate_ndjson(fh, source, agg))


def _csv_into(items: Iterator[Trade | Rejected], agg: Aggregator) -> Iterator[Rejected]:
    for item in items:
        if isinstance(item, Rejected):
            yield item
        else:
            agg.add_trade(item)
