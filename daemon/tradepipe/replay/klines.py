"""``GET /api/v3/klines?interval=1m``: the emulator's 1-minute klines, computed from what it
has published with the core's aggregation, so ``tradepipe verify`` has an exchange to check
against in local mode and in tests.

Rules:
1. A kline is the core aggregate of the published trades of its (symbol, minute), mapped as the
   exchange maps it (:func:`tradepipe.core.checks.kline_of_partial`): trade count ``Σ(l-f+1)``,
   base and quote volume, taker-buy (``m = false``) base and quote volume, OHLC. Figures are
   printed at 8 places; a quote volume with more places is rounded half-even (rule 2 of
   :mod:`tradepipe.core.checks`: Binance's own figure is within one rounding per fill).
   Against Binance's recorded klines for the same trades, every field is equal (a test).
2. Only minutes with trades have a kline (Binance also answers empty minutes, with ``n = 0``;
   a client must treat a minute without a kline as one without trades, as verify does).
3. Parameters as Binance's: ``symbol`` and ``interval`` are required (only ``1m`` is served:
   anything else is -1120), ``startTime``/``endTime`` (ms, inclusive, on the open time),
   ``limit`` 1..1000 (default 500); without ``startTime`` the most recent ``limit`` klines up
   to ``endTime``. Weight 2.
4. At most ``keep_minutes`` minutes per symbol are kept (the oldest are dropped), so a looped
   replay runs in bounded memory.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping

from tradepipe.core import Trade, minute_of
from tradepipe.core.aggregate import Aggregator
from tradepipe.core.checks import kline_of_partial
from tradepipe.core.decimals import read_units

KLINES_WEIGHT = 2
DEFAULT_KLINES = 500
MAX_KLINES = 1000
KEEP_MINUTES = 7 * 24 * 60


class KlinesError(ValueError):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


class MinuteKlines:
    """Rule 1's aggregates of published trades, per symbol and minute."""

    def __init__(self, keep_minutes: int = KEEP_MINUTES) -> None:
        self.keep = keep_minutes
        self._minutes: dict[str, list[int]] = {}  # sorted minute_ms per symbol
        self._aggs: dict[tuple[str, int], Aggregator] = {}

    def add(self, trade: Trade, price: str, quantity: str) -> None:
        """Count one published trade; ``price`` and ``quantity`` are its text as served (read
        by the one decimal reader: cheaper per trade than from the ``Decimal`` values)."""
        key = (trade.symbol, minute_of(trade.time_ms))
        agg = self._aggs.get(key)
        if agg is None:
            agg = self._aggs[key] = Aggregator()
            minutes = self._minutes.setdefault(trade.symbol, [])
            if minutes and key[1] < minutes[-1]:  # never on a tape (ids and times increase)
                minutes.insert(bisect_left(minutes, key[1]), key[1])
            else:
                minutes.append(key[1])
            if len(minutes) > self.keep:
                del self._aggs[(trade.symbol, minutes.pop(0))]
        agg.add(
            trade.symbol, trade.time_ms, trade.agg_id,
            read_units("p", price), read_units("q", quantity),
            trade.last_id - trade.first_id + 1, trade.buyer_is_maker,
        )  # fmt: skip

    def select(
        self, symbol: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[list[object]]:
        """Rule 3's answer: klines as Binance's 12-field arrays."""
        minutes = self._minutes.get(symbol, [])
        lo = 0 if start_ms is None else bisect_left(minutes, start_ms)
        hi = len(minutes) if end_ms is None else bisect_right(minutes, end_ms)
        chosen = minutes[lo:hi][:limit] if start_ms is not None else minutes[lo:hi][-limit:]
        out = []
        for m in chosen:
            (partial,) = self._aggs[(symbol, m)].result().values()
            out.append(kline_of_partial(partial).rest_array())
        return out


def parse_klines(params: Mapping[str, str], known: bool) -> tuple[str, int | None, int | None, int]:
    """Query string -> (symbol, startTime, endTime, limit), or :class:`KlinesError` (rule 3)."""
    allowed = {"symbol", "interval", "startTime", "endTime", "limit", "timeZone"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        unread = ", ".join(unknown)
        raise KlinesError(-1104, f"Not all sent parameters were read; unknown: {unread}.")
    symbol = params.get("symbol", "")
    if not symbol:
        raise KlinesError(
            -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    if "interval" not in params:
        raise KlinesError(
            -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
        )
    if params["interval"] != "1m":
        raise KlinesError(-1120, "Invalid interval.")
    if not known:
        raise KlinesError(-1121, "Invalid symbol.")
    numbers: dict[str, int | None] = {}
    for name in ("startTime", "endTime", "limit"):
        text = params.get(name)
        if text is not None and not (text.isascii() and text.isdigit() and len(text) <= 20):
            legal = "legal range is '^[0-9]{1,20}$'."
            raise KlinesError(-1100, f"Illegal characters found in parameter '{name}'; {legal}")
        numbers[name] = None if text is None else int(text)
    limit = numbers["limit"] if numbers["limit"] is not None else DEFAULT_KLINES
    if not 1 <= limit <= MAX_KLINES:
        raise KlinesError(-1130, "Data sent for parameter 'limit' is not valid.")
    return symbol, numbers["startTime"], numbers["endTime"], limit
