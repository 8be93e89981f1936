"""Proving stored minutes: id continuity, a row against the exchange's 1-minute kline, and a
status for every minute. No I/O: ``tradepipe verify`` (:mod:`tradepipe.verify`) feeds it.

Rules:

1. **What a kline says.** Binance's 1m kline of a minute carries, over the minute's trades: the
   number of underlying trades ``n = Σ(l - f + 1)``, base volume ``v = Σq``, quote volume
   ``q = Σp·q``, the taker-buy (``m = false``) base and quote volumes ``V`` and ``Q``, and the
   prices of the first, highest, lowest and last trade. A row maps onto it one to one
   (:func:`kline_of_partial`): ``trades_b + trades_s``, ``total_btc_b + total_btc_s``,
   ``total_usd_b + total_usd_s``, ``total_btc_b``, ``total_usd_b``, ``open/high/low/close``.
2. **Rounding of quote volumes.** The kline prints every figure at 8 places. Counts, base
   volumes and prices (8-place inputs) are compared exactly. A quote volume is exact when our
   exact sum fits 8 places (BTCUSDT: 2-place prices x 5- or 6-place quantities; the recorded
   klines match to the last digit); when it has more places, the exchange's figure is one
   rounding per fill away from it, so it may differ by at most ``n x 1e-8`` (``n``: the
   kline's trade count), and anything within that bound is a match.
3. **Continuity.** Per symbol, aggregate ids are consecutive (``BINANCE.md``). A gap between the
   id ranges inside a row, or between one stored minute's highest id and the next stored
   minute's lowest, is a :class:`Hole` with its id range and the minutes it touches (the two
   rows' minutes and every minute between them). No exchange is needed to see one.
4. **Statuses.** A minute in the range gets exactly one: ``missing`` (no row, the exchange has
   trades), ``hole`` (ids missing inside its row, or a gap next to it while its row is short
   of the exchange's count or disagrees), ``mismatch`` (no id visibly missing, figures differ:
   the columns and both values are in the detail) or ``exact``. A minute with no row and no
   trades on the exchange has nothing to prove and gets none. A gap between two rows that
   both match the exchange (so no minute is short) is still reported, on the later row, as a
   ``hole``: loss is never assumed away.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from tradepipe.core.aggregate import EIGHT_PLACES, EXACT, MINUTE_MS, ZERO, MinutePartial
from tradepipe.core.decimals import read_units, units_to_decimal
from tradepipe.core.errors import ParseError
from tradepipe.core.rows import minute_text

_ZERO_TEXT = re.compile(r"0+(\.0+)?")
QUOTE_FIELDS = frozenset({"quote_volume", "taker_buy_quote_volume"})


class Status(enum.StrEnum):
    EXACT = "exact"
    MISMATCH = "mismatch"
    MISSING = "missing"
    HOLE = "hole"


class KlineError(ValueError):
    """An answer from ``/api/v3/klines`` that is not a well-formed kline."""


@dataclass(frozen=True, slots=True)
class Kline:
    """One 1-minute kline, exact (rule 1). Field names follow Binance's documentation."""

    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal

    def figures(self) -> dict[str, Decimal | int]:
        """The compared figures, by name, in a fixed order."""
        return {
            "trades": self.trades,
            "volume": self.volume,
            "quote_volume": self.quote_volume,
            "taker_buy_volume": self.taker_buy_volume,
            "taker_buy_quote_volume": self.taker_buy_quote_volume,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
        }

    def rest_array(self) -> list[object]:
        """The kline as ``/api/v3/klines`` answers it (12 fields, decimals as 8-place text)."""

        def text(d: Decimal) -> str:
            return format(d.quantize(EIGHT_PLACES), "f")

        return [
            self.open_ms, text(self.open), text(self.high), text(self.low), text(self.close),
            text(self.volume), self.open_ms + MINUTE_MS - 1, text(self.quote_volume),
            self.trades, text(self.taker_buy_volume), text(self.taker_buy_quote_volume), "0",
        ]  # fmt: skip


def _amount(name: str, value: object) -> Decimal:
    if isinstance(value, str) and _ZERO_TEXT.fullmatch(value):
        return ZERO
    try:
        return units_to_decimal(read_units(name, value))
    except ParseError as exc:
        raise KlineError(f"kline field {name}: {exc}") from None


def _int(name: str, value: object) -> int:
    if type(value) is not int or value < 0:
        raise KlineError(f"kline field {name}: {value!r} is not a count")
    return value


def kline_of_rest(item: object) -> Kline:
    """One element of a ``/api/v3/klines`` answer -> a :class:`Kline`, or :class:`KlineError`."""
    if not isinstance(item, list) or len(item) < 11:
        raise KlineError(f"a kline is an array of 12 fields, got {item!r:.80}")
    return Kline(
        open_ms=_int("open_time", item[0]),
        open=_amount("open", item[1]),
        high=_amount("high", item[2]),
        low=_amount("low", item[3]),
        close=_amount("close", item[4]),
        volume=_amount("volume", item[5]),
        quote_volume=_amount("quote_volume", item[7]),
        trades=_int("trades", item[8]),
        taker_buy_volume=_amount("taker_buy_volume", item[9]),
        taker_buy_quote_volume=_amount("taker_buy_quote_volume", item[10]),
    )


def kline_of_stream(k: Mapping[str, object]) -> Kline:
    """The ``k`` object of a ``<symbol>@kline_1m`` event -> a :class:`Kline`."""
    return kline_of_rest(
        [k.get("t"), k.get("o"), k.get("h"), k.get("l"), k.get("c"), k.get("v"), k.get("T"),
         k.get("q"), k.get("n"), k.get("V"), k.get("Q")]
    )  # fmt: skip


def kline_of_partial(p: MinutePartial) -> Kline:
    """What the exchange's kline of a minute holding exactly ``p``'s trades says (rule 1),
    quote volumes exact (the emulator rounds them to 8 places when it prints them)."""
    add = EXACT.add
    return Kline(
        open_ms=p.minute_ms,
        open=p.open,
        high=p.high,
        low=p.low,
        close=p.close,
        volume=add(p.base_b, p.base_s),
        quote_volume=add(p.quote_b, p.quote_s),
        trades=p.trades_b + p.trades_s,
        taker_buy_volume=p.base_b,
        taker_buy_quote_volume=p.quote_b,
    )


@dataclass(frozen=True, slots=True)
class Difference:
    figure: str  # a key of Kline.figures()
    ours: Decimal | int
    exchange: Decimal | int

    def as_dict(self) -> dict[str, str]:
        return {"figure": self.figure, "ours": _show(self.ours), "exchange": _show(self.exchange)}


def _show(value: Decimal | int) -> str:
    return str(value) if isinstance(value, int) else format(value.normalize(EXACT), "f")


def quote_matches(ours: Decimal, exchange: Decimal, trades: int) -> bool:
    """Rule 2: exact when ours fits 8 places, else within one 1e-8 rounding per trade."""
    if _fits8(ours):
        return ours == exchange
    return EXACT.abs(EXACT.subtract(ours, exchange)) <= EIGHT_PLACES * max(trades, 1)


def _fits8(value: Decimal) -> bool:
    exponent = value.normalize(EXACT).as_tuple().exponent  # exact: sums have up to 56 digits
    return isinstance(exponent, int) and exponent >= -8


def compare(ours: Kline, exchange: Kline) -> list[Difference]:
    """Every figure that differs (rule 2); empty when the minute is proven."""
    out: list[Difference] = []
    mine, theirs = ours.figures(), exchange.figures()
    for name, value in mine.items():
        other = theirs[name]
        if name in QUOTE_FIELDS:
            assert isinstance(value, Decimal) and isinstance(other, Decimal)
            same = quote_matches(value, other, exchange.trades)
        else:
            same = value == other
        if not same:
            out.append(Difference(name, value, other))
    return out


@dataclass(frozen=True, slots=True)
class Hole:
    """Aggregate ids ``first..last`` of a symbol missing from the rows (rule 3)."""

    symbol: str
    first: int
    last: int
    minutes: tuple[int, ...]  # minute_ms it touches, in order
    inside: bool  # inside one row (else between two rows)

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def as_dict(self) -> dict[str, object]:
        return {
            "first_id": self.first,
            "last_id": self.last,
            "ids": self.last - self.first + 1,
            "minutes": [minute_text(m) for m in self.minutes],
        }


def holes(symbol: str, rows: Sequence[MinutePartial]) -> list[Hole]:
    """Rule 3 over one symbol's rows (any order), in id order."""
    out: list[Hole] = []
    ordered = sorted(rows, key=lambda p: p.minute_ms)
    for p in ordered:
        ranges = p.ids.ranges
        for (_, hi), (lo, _) in pairwise(ranges):
            out.append(Hole(symbol, hi + 1, lo - 1, (p.minute_ms,), inside=True))
    for prev, nxt in pairwise(ordered):
        if not prev.ids or not nxt.ids:
            continue
        top, bottom = prev.ids.ranges[-1][1], nxt.ids.ranges[0][0]
        if bottom > top + 1:
            touched = tuple(range(prev.minute_ms, nxt.minute_ms + 1, MINUTE_MS))
            out.append(Hole(symbol, top + 1, bottom - 1, touched, inside=False))
    out.sort(key=lambda h: h.first)
    return out


@dataclass(frozen=True, slots=True)
class MinuteCheck:
    """One minute's verdict (rule 4)."""

    symbol: str
    minute_ms: int
    status: Status
    differences: tuple[Difference, ...] = ()
    holes: tuple[Hole, ...] = ()
    exchange_trades: int = 0
    stored_trades: int | None = None  # None: no row

    @property
    def minute(self) -> str:
        return minute_text(self.minute_ms)

    def detail(self) -> dict[str, object]:
        """The machine-readable detail (stored as JSON in ``minute_checks.detail``)."""
        out: dict[str, object] = {
            "exchange_trades": self.exchange_trades,
            "stored_trades": self.stored_trades,
        }
        if self.differences:
            out["differences"] = [d.as_dict() for d in self.differences]
        if self.holes:
            out["holes"] = [h.as_dict() for h in self.holes]
        return out

    def describe(self) -> str:
        """One line for people."""
        if self.status is Status.EXACT:
            return f"{self.exchange_trades} trades, every figure equal to the exchange's kline"
        parts: list[str] = []
        if self.status is Status.MISSING:
            parts.append(f"no row; the exchange has {self.exchange_trades} trades")
        for h in self.holes:
            parts.append(f"ids {h} missing ({h.last - h.first + 1})")
        parts.extend(f"{d.figure}: ours {_show(d.ours)}, exchange {_show(d.exchange)}"
                     for d in self.differences)  # fmt: skip
        return "; ".join(parts)


def classify(
    symbol: str,
    minutes: Iterable[int],
    rows: Mapping[int, MinutePartial],
    klines: Mapping[int, Kline],
) -> list[MinuteCheck]:
    """Rule 4 for ``symbol`` over ``minutes`` (minute_ms), given its stored rows and the
    exchange's klines in that range (a minute without a kline had no trades)."""
    found = holes(symbol, list(rows.values()))
    checks: dict[int, MinuteCheck] = {}
    differences: dict[int, list[Difference]] = {}
    for m in minutes:
        k = klines.get(m)
        row = rows.get(m)
        if row is None:
            if k is not None and k.trades > 0:
                checks[m] = MinuteCheck(symbol, m, Status.MISSING, exchange_trades=k.trades)
            continue
        ours = kline_of_partial(row)
        theirs = k if k is not None else _empty(m)
        differences[m] = compare(ours, theirs)
        checks[m] = MinuteCheck(
            symbol, m, Status.MISMATCH if differences[m] else Status.EXACT,
            tuple(differences[m]), exchange_trades=theirs.trades, stored_trades=ours.trades,
        )  # fmt: skip
    touching: dict[int, list[Hole]] = {}
    for h in found:
        if h.inside:
            targets = [h.minutes[0]]
        else:
            between = [m for m in h.minutes if m in checks and m not in rows]
            short = [m for m in (h.minutes[0], h.minutes[-1]) if differences.get(m)]
            targets = between + short
            if not targets:  # rule 4's last sentence
                targets = [h.minutes[-1]]
        for m in targets:
            touching.setdefault(m, []).append(h)
    for m, hs in touching.items():
        check = checks.get(m)
        if check is None:
            continue  # outside the range asked for
        status = check.status if check.status is Status.MISSING else Status.HOLE
        checks[m] = MinuteCheck(
            symbol, m, status, check.differences, tuple(hs),
            check.exchange_trades, check.stored_trades,
        )  # fmt: skip
    return [checks[m] for m in sorted(checks)]


def _empty(minute_ms: int) -> Kline:
    return Kline(minute_ms, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, 0, ZERO, ZERO)
