"""The exchange's listing: which symbols of the tape trade, and ``GET /api/v3/exchangeInfo``.

Rules:
1. Every symbol of the tape is on the exchange; it is ``TRADING`` unless it was started
   unlisted (``ReplayOptions.unlisted``) or delisted since (:meth:`Market.delist`), then
   ``BREAK``, as Binance shows a halted or delisted pair.
2. Only a ``TRADING`` symbol's trades are published: the publisher skips the others' tape trades
   (they never happened), so a symbol listed mid-run (:meth:`Market.list`) trades from then on,
   its REST history starting at its first published trade, and a delisted one goes silent.
3. ``exchangeInfo`` answers Binance's shape for what a client reads: ``symbols[]`` with
   ``symbol``, ``status``, ``baseAsset``, ``quoteAsset``, and ``rateLimits``; weight 20.
   The quote asset is the longest known quote suffix of the name (:data:`QUOTE_ASSETS`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

EXCHANGE_INFO_WEIGHT = 20
TRADING, BREAK = "TRADING", "BREAK"
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "TUSD", "BTC", "ETH", "BNB", "TRY", "EUR", "BRL", "JPY")


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")``; a name with no known quote suffix is all base."""
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


class Market:
    def __init__(self, symbols: Iterable[str], unlisted: Iterable[str] = ()) -> None:
        self.status = {s.upper(): TRADING for s in symbols}
        for symbol in unlisted:
            if symbol.upper() not in self.status:
                raise ValueError(f"unlisted symbol {symbol!r} is not on the tape")
            self.status[symbol.upper()] = BREAK
        self.changes = 0

    def trading(self, symbol: str) -> bool:
        return self.status.get(symbol) == TRADING

    def list(self, symbol: str) -> bool:
        """Rule 2: ``symbol`` trades from now on; False if it is not on the tape."""
        return self._set(symbol, TRADING)

    def delist(self, symbol: str) -> bool:
        """Rule 2: ``symbol`` stops trading now; False if it is not on the tape."""
        return self._set(symbol, BREAK)

    def _set(self, symbol: str, status: str) -> bool:
        if symbol.upper() not in self.status:
            return False
        self.status[symbol.upper()] = status
        self.changes += 1
        return True

    def exchange_info(self, weight_limit: int) -> dict[str, Any]:
        """Rule 3."""
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": weight_limit,
                },
                {
                    "rateLimitType": "CONNECTIONS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 300,
                },
            ],
            "symbols": [
                {
                    "symbol": symbol,
                    "status": status,
                    "baseAsset": split_symbol(symbol)[0],
                    "quoteAsset": split_symbol(symbol)[1],
                }
                for symbol, status in sorted(self.status.items())
            ],
        }
