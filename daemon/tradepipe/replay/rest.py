"""The REST side: ``GET /api/v3/aggTrades`` over what has been published, with Binance's
parameter rules, error bodies and request-weight accounting.

Rules:
1. Errors are HTTP 400 with ``{"code": -11xx, "msg": ...}`` as Binance sends them: missing
   symbol -1102, unknown symbol -1121, a malformed number -1100, a limit outside 1..1000 -1130,
   an unknown parameter -1104.
2. Every ``/api/v3`` request adds its weight (aggTrades 4) to the current wall-clock minute; the
   response carries the minute's total in ``X-MBX-USED-WEIGHT-1M``. Past the limit the answer
   is 429 with ``Retry-After`` (seconds to the next minute) and code -1003.
3. Faults (for tests, :class:`RestFaults`): for a while every aggTrades request is answered
   with a chosen status (403 as Binance's WAF sends it, 5xx, 429/418 with ``Retry-After``, 451
   as for a blocked region); or REST *lags*: it shows only the trades published before the
   lag began (empty pages for newer ids), as Binance's REST may trail its stream.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from tradepipe.replay.klines import KLINES_WEIGHT, KlinesError, MinuteKlines, parse_klines
from tradepipe.replay.market import EXCHANGE_INFO_WEIGHT, Market
from tradepipe.replay.store import DEFAULT_LIMIT, MAX_LIMIT, PublishedTrades, Query

AGG_TRADES_WEIGHT = 4
_INT_RE = re.compile(r"[0-9]{1,20}")
_AGG_TRADE_PARAMS = frozenset({"symbol", "fromId", "startTime", "endTime", "limit"})


class RestError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


class WeightMeter:
    """Request weight used in the current wall-clock minute (rule 2)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit, self._clock = limit, clock
        self._minute, self.used = -1, 0

    def charge(self, weight: int) -> tuple[bool, int]:
        """Add ``weight``; ``(allowed, seconds until the minute resets)``."""
        now = self._clock()
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self.used = minute, 0
        self.used += weight
        return self.used <= self.limit, max(1, math.ceil((minute + 1) * 60 - now))


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not _INT_RE.fullmatch(text):
        raise RestError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(text)


def parse_agg_trades(params: Mapping[str, str], published: PublishedTrades) -> tuple[str, Query]:
    """Query string -> (symbol, query), or a :class:`RestError` as Binance would answer."""
    unknown = sorted(set(params) - _AGG_TRADE_PARAMS)
    if unknown:
        raise RestError(-1104, f"Not all sent parameters were read; unknown: {', '.join(unknown)}.")
    symbol = params.get("symbol", "")
    if not symbol:
        raise RestError(
            -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    if not published.knows(symbol):
        raise RestError(-1121, "Invalid symbol.")
    limit = _int_param(params, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    elif not 1 <= limit <= MAX_LIMIT:
        raise RestError(-1130, "Data sent for parameter 'limit' is not valid.")
    query = Query(
        from_id=_int_param(params, "fromId"),
        start_time=_int_param(params, "startTime"),
        end_time=_int_param(params, "endTime"),
        limit=limit,
    )
    return symbol, query


def error_response(exc: RestError, headers: Mapping[str, str] | None = None) -> web.Response:
    body = msgspec.json.encode({"code": exc.code, "msg": exc.msg})
    return web.Response(
        status=exc.status, body=body, content_type="application/json", headers=headers
    )


GEO_BLOCK_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)


@dataclass(slots=True)
class RestFaults:
    """Rule 3: what the aggTrades endpoint does wrong, and until when (monotonic)."""

    status: int = 0
    status_until: float = 0.0
    retry_after: int = 1
    lag_until: float = 0.0
    lag_ids: dict[str, int] = field(default_factory=dict)
    geo_blocked: bool = False
    symbols: frozenset[str] | None = None  # the failing status only for these (None: all)

    def failing(self, now: float, symbol: str) -> int:
        if self.geo_blocked:
            return 451
        if self.symbols is not None and symbol.upper() not in self.symbols:
            return 0
        return self.status if now < self.status_until else 0

    def max_id(self, symbol: str, now: float) -> int | None:
        return self.lag_ids.get(symbol) if now < self.lag_until else None


class RestApi:
    """The ``/api/v3`` routes over a :class:`PublishedTrades`."""

    def __init__(
        self, published: PublishedTrades, weight_limit: int, market: Market | None = None
    ) -> None:
        self.published = published
        self.market = market or Market(published.symbols)
        self.meter = WeightMeter(weight_limit)
        self.requests = 0
        self.faults = RestFaults()
        self.failed_requests = 0
        self.klines = MinuteKlines()  # fed by the publisher (replay/klines.py)

    def fail(
        self, status: int, seconds: float, retry_after: int = 1, symbols: list[str] | None = None
    ) -> None:
        """Answer aggTrades requests (for ``symbols``, or all) ``status`` for ``seconds``."""
        self.faults.status, self.faults.retry_after = status, retry_after
        self.faults.symbols = None if symbols is None else frozenset(s.upper() for s in symbols)
        self.faults.status_until = time.monotonic() + seconds

    def lag(self, seconds: float) -> None:
        """For ``seconds``, show only what is published now (newer ids: empty pages)."""
        last = {s: self.published.last_id(s) for s in self.published.symbols}
        self.faults.lag_ids = {s: -1 if i is None else i for s, i in last.items()}
        self.faults.lag_until = time.monotonic() + seconds

    def _fault_response(self, status: int) -> web.Response:
        self.failed_requests += 1
        if status == 451:
            return web.Response(status=451, text=GEO_BLOCK_MSG)
        headers = {"Retry-After": str(self.faults.retry_after)} if status in (418, 429) else None
        if status == 403:  # Binance's WAF: an HTML page, not the API's JSON error
            return web.Response(status=403, text="<html>403 Forbidden</html>", headers=headers)
        return error_response(RestError(-1000, f"HTTP {status} (emulated)", status), headers)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/aggTrades", self.agg_trades),
            web.get("/api/v3/ping", self.ping),
            web.get("/api/v3/time", self.server_time),
            web.get("/api/v3/exchangeInfo", self.exchange_info),
            web.get("/api/v3/klines", self.klines_1m),
        ]

    def _charge(self, weight: int) -> dict[str, str]:
        self.requests += 1
        allowed, retry_after = self.meter.charge(weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.meter.used)}
        if not allowed:
            headers["Retry-After"] = str(retry_after)
            raise _Limited(headers, self.meter.limit)
        return headers

    async def agg_trades(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        if status := self.faults.failing(now, request.query.get("symbol", "")):
            return self._fault_response(status)
        try:
            headers = self._charge(AGG_TRADES_WEIGHT)
        except _Limited as limited:
            return limited.response()
        try:
            symbol, query = parse_agg_trades(request.query, self.published)
        except RestError as exc:
            return error_response(exc, headers)
        page = self.published.select(symbol, query, self.faults.max_id(symbol, now))
        body = b"[" + b",".join(page) + b"]"
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def klines_1m(self, request: web.Request) -> web.Response:
        try:
            headers = self._charge(KLINES_WEIGHT)
        except _Limited as limited:
            return limited.response()
        try:
            symbol = request.query.get("symbol", "")
            args = parse_klines(request.query, self.published.knows(symbol))
        except KlinesError as exc:
            return error_response(RestError(exc.code, exc.msg), headers)
        body = msgspec.json.encode(self.klines.select(*args))
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def ping(self, request: web.Request) -> web.Response:
        return self._json(b"{}", 1)

    async def server_time(self, request: web.Request) -> web.Response:
        return self._json(msgspec.json.encode({"serverTime": int(time.time() * 1000)}), 1)

    async def exchange_info(self, request: web.Request) -> web.Response:
        info = self.market.exchange_info(self.meter.limit)  # replay/market.py
        return self._json(msgspec.json.encode(info), EXCHANGE_INFO_WEIGHT)

    def _json(self, body: bytes, weight: int) -> web.Response:
        try:
            headers = self._charge(weight)
        except _Limited as limited:
            return limited.response()
        return web.Response(body=body, content_type="application/json", headers=headers)


class _Limited(Exception):
    def __init__(self, headers: dict[str, str], limit: int) -> None:
        super().__init__("request weight limit")
        self.headers, self.limit = headers, limit

    def response(self) -> web.Response:
        msg = (
            f"Too much request weight used; current limit is {self.limit} request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )
        return error_response(RestError(-1003, msg, status=429), self.headers)
