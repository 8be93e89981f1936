"""The trade value: one Binance aggTrade, validated, with exact decimal money.

Rules:
1. A ``Trade`` from input is made only by :func:`tradepipe.core.parse.validate` (whose module
   header lists every rule it enforces); code that already holds valid values (the emulator
   shifting a tape, tests) may build one directly. ``price`` and ``quantity`` are ``Decimal``,
   never floats: exact at 8 decimal places, at most 20 integer digits, strictly positive.
2. ``time_ms`` is the trade time ``T`` in UTC epoch milliseconds (microsecond inputs are
   floored to the millisecond; the minute bucket is the same either way).
3. Side: ``buyer_is_maker`` (``m``) true means the buyer was the resting maker order, so the
   aggressor *sold*: a **sell**. ``m`` false is a **buy**.
4. ``(symbol, agg_id)`` identifies a trade; the same pair seen again is the same trade.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec


class Side(enum.Enum):
    BUY = "b"
    SELL = "s"


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One validated aggTrade (a frozen, slotted value)."""

    symbol: str
    agg_id: int
    price: Decimal
    quantity: Decimal
    first_id: int
    last_id: int
    time_ms: int
    buyer_is_maker: bool

    @property
    def side(self) -> Side:
        return Side.SELL if self.buyer_is_maker else Side.BUY

    @property
    def trade_count(self) -> int:
        """Underlying trades in this aggregate trade: ``l - f + 1``."""
        return self.last_id - self.first_id + 1
