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
from decimal import Context, Decimal, InvalidOperation

import msgspec

from tradepipe.core.errors import ParseError

MAX_DECIMAL_PLACES = 8
MAX_INTEGER_DIGITS = 20
# Plausible trade times: 2010-01-01 .. 2100-01-01 (Binance opened in 2017; leave room).
MIN_TIME_MS = 1_262_304_000_000
MAX_TIME_MS = 4_102_444_800_000
_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS
_EIGHT_PLACES = Decimal(1).scaleb(-MAX_DECIMAL_PLACES)
_CHECK = Context(prec=MAX_INTEGER_DIGITS + MAX_DECIMAL_PLACES + 4, traps=[InvalidOperation])


class Side(enum.Enum):
    BUY = "b"
    SELL = "s"


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One validated aggTrade (a frozen, slotted value; validation runs on construction)."""

    symbol: str
    agg_id: int
    price: Decimal
    quantity: Decimal
    first_id: int
    last_id: int
    time_ms: int
    buyer_is_maker: bool

    def __post_init__(self) -> None:
        s, a, f, l_, t = self.symbol, self.agg_id, self.first_id, self.last_id, self.time_ms
        if (
            type(s) is not str
            or not (0 < len(s) <= 32 and s.isascii() and s.isalnum())
            or (s != s.upper())
        ):
            raise ParseError("bad_symbol", f"symbol {s!r} is not 1-32 of A-Z0-9")
        if type(a) is not int or type(f) is not int or type(l_) is not int or min(a, f, l_) < 0:
            raise ParseError(
                "bad_id", f"ids a={a!r} f={f!r} l={l_!r} must be non-negative integers"
            )
        if f > l_:
            raise ParseError("id_order", f"first trade id {f} > last trade id {l_}")
        if type(t) is not int or not MIN_TIME_MS <= t < MAX_TIME_MS:
            raise ParseError("bad_time", f"trade time {t!r} ms is not plausible")
        if type(self.buyer_is_maker) is not bool:
            raise ParseError("bad_flag", f"m {self.buyer_is_maker!r} is not a boolean")
        _check_amount("price", self.price)
        _check_amount("quantity", self.quantity)

    @property
    def side(self) -> Side:
        return Side.SELL if self.buyer_is_maker else Side.BUY

    @property
    def trade_count(self) -> int:
        """Underlying trades in this aggregate trade: ``l - f + 1``."""
        return self.last_id - self.first_id + 1


_CACHE_LIMIT = 1 << 16


def _check_amount(field: str, value: object) -> None:
    if type(value) is not Decimal or not value.is_finite():
        raise ParseError("bad_decimal", f"{field} {value!r} is not a finite Decimal")
    if value <= 0:
        raise ParseError("not_positive", f"{field} {value} is not positive")
    if value >= _LIMIT:
        raise ParseError("out_of_range", f"{field} {value} has over {MAX_INTEGER_DIGITS} digits")
    if value.quantize(_EIGHT_PLACES, context=_CHECK) != value:
        raise ParseError(
            "too_precise", f"{field} {value} has more than {MAX_DECIMAL_PLACES} decimal places"
        )


def parse_decimal(field: str, text: object) -> Decimal:
    """A plain decimal string (``"123.45"``; digits, at most one dot) -> exact ``Decimal``.

    Stricter than ``Decimal()``, which would also take ``" 1"``, ``"1_0"``, ``"1E+3"``, ``"NaN"``.
    Range, sign and precision are checked by :class:`Trade`.
    """
    if type(text) is not str:
        raise ParseError("bad_decimal", f"{field} {text!r} is not a decimal string")
    cached = _PARSED.get(text)  # prices repeat a lot: a dict hit beats re-parsing
    if cached is not None:
        return cached
    whole, _, frac = text.partition(".")
    if not (whole and whole.isascii() and whole.isdigit() and (not frac or frac.isdigit())) or (
        _ == "." and not frac
    ):
        raise ParseError("bad_decimal", f"{field} {text!r} is not a plain decimal string")
    value = Decimal(text)
    if len(_PARSED) >= _CACHE_LIMIT:
        _PARSED.clear()
    _PARSED[text] = value
    return value


_PARSED: dict[str, Decimal] = {}


def epoch_ms(field: str, value: object) -> int:
    """An epoch time in ms or us (detected by magnitude) -> ms (rule 2)."""
    if type(value) is not int:
        raise ParseError("bad_time", f"{field} {value!r} is not an integer epoch time")
    if value >= 100_000_000_000_000:  # >= 1e14: microseconds (ms will not reach this until 5138)
        value //= 1000
    if not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise ParseError("bad_time", f"{field} {value} is not a plausible epoch time")
    return value
