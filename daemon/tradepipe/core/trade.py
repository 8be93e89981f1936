"""The trade value: one Binance aggTrade, validated, with exact decimal money.

Rules:
1. ``price`` and ``quantity`` are ``Decimal`` built from the exchange's decimal strings, never
   from floats; at most 8 decimal places of significance (Binance's finest step), at most 20
   integer digits, strictly positive.
2. ``time_ms`` is the trade time ``T`` in UTC epoch milliseconds (microsecond inputs are
   floored to the millisecond; the minute bucket is the same either way).
3. Side: ``buyer_is_maker`` (``m``) true means the buyer was the resting maker order, so the
   aggressor *sold*: a **sell**. ``m`` false is a **buy**.
4. ``(symbol, agg_id)`` identifies a trade; the same pair seen again is the same trade.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal

from tradepipe.core.errors import ParseError

MAX_DECIMAL_PLACES = 8
MAX_INTEGER_DIGITS = 20
# Plausible trade times: 2010-01-01 .. 2100-01-01 (Binance opened in 2017; leave room).
MIN_TIME_MS = 1_262_304_000_000
MAX_TIME_MS = 4_102_444_800_000
_SYMBOL_RE = re.compile(r"[A-Z0-9]{1,32}")
_DECIMAL_RE = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


class Side(enum.Enum):
    BUY = "b"
    SELL = "s"


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    agg_id: int
    price: Decimal
    quantity: Decimal
    first_id: int
    last_id: int
    time_ms: int
    buyer_is_maker: bool

    def __post_init__(self) -> None:
        if not _SYMBOL_RE.fullmatch(self.symbol):
            raise ParseError("bad_symbol", f"symbol {self.symbol!r} is not 1-32 of A-Z0-9")
        for name in ("agg_id", "first_id", "last_id"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ParseError("bad_id", f"{name} {value!r} is not a non-negative integer")
        if self.first_id > self.last_id:
            raise ParseError(
                "id_order", f"first trade id {self.first_id} > last trade id {self.last_id}"
            )
        if type(self.time_ms) is not int or not MIN_TIME_MS <= self.time_ms < MAX_TIME_MS:
            raise ParseError("bad_time", f"trade time {self.time_ms!r} ms is not plausible")
        if type(self.buyer_is_maker) is not bool:
            raise ParseError("bad_flag", f"m {self.buyer_is_maker!r} is not a boolean")

    @property
    def side(self) -> Side:
        return Side.SELL if self.buyer_is_maker else Side.BUY

    @property
    def trade_count(self) -> int:
        """Underlying trades in this aggregate trade: ``l - f + 1``."""
        return self.last_id - self.first_id + 1

    @property
    def quote(self) -> Decimal:
        """Quote amount ``price x quantity``, exact."""
        return self.price * self.quantity


def parse_decimal(field: str, text: object) -> Decimal:
    """A strictly positive plain decimal string -> exact ``Decimal`` (rule 1)."""
    if not isinstance(text, str):
        raise ParseError("bad_decimal", f"{field} {text!r} is not a decimal string")
    match = _DECIMAL_RE.fullmatch(text)
    if match is None:
        raise ParseError("bad_decimal", f"{field} {text!r} is not a plain decimal string")
    whole, frac = match.group(1), match.group(2) or ""
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ParseError("out_of_range", f"{field} {text!r} has over {MAX_INTEGER_DIGITS} digits")
    if len(frac) > MAX_DECIMAL_PLACES and frac[MAX_DECIMAL_PLACES:].strip("0"):
        raise ParseError(
            "too_precise", f"{field} {text!r} has more than {MAX_DECIMAL_PLACES} decimal places"
        )
    value = Decimal(text)
    if not value:
        raise ParseError("not_positive", f"{field} {text!r} is not positive")
    return value


def epoch_ms(field: str, value: object) -> int:
    """An epoch time in ms or us (detected by magnitude) -> ms (rule 2)."""
    if type(value) is not int:
        raise ParseError("bad_time", f"{field} {value!r} is not an integer epoch time")
    if value >= 100_000_000_000_000:  # >= 1e14: microseconds (ms will not reach this until 5138)
        value //= 1000
    if not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise ParseError("bad_time", f"{field} {value} is not a plausible epoch time")
    return value
