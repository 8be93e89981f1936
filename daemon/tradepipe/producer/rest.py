"""``GET /api/v3/aggTrades``, ``GET /api/v3/exchangeInfo`` (and ``/api/v3/klines``, for
``tradepipe verify``) within Binance's limits.

- Pacing: requests are spaced so that their weight (aggTrades 4, klines 2, exchangeInfo 20)
  stays within ``weight_per_minute``, our share of the per-IP budget (6000/min on Binance).
- ``X-MBX-USED-WEIGHT-1M`` above that share pauses us until the next minute.
- 429 (too many requests) and 418 (IP banned for ignoring 429s) raise :class:`RateLimited` with
  the server's ``Retry-After``; the caller must wait that long.
- 451 (a restricted region) raises :class:`GeoBlocked`, told once by :class:`GeoBlock`.
- Network errors, 403 (Binance's WAF), 5xx and answers that are not a JSON array raise
  :class:`RestUnavailable`; other statuses raise :class:`RestRejected`. All are
  :class:`RestError`: the backfiller retries every one of them until its time limit, since a
  wrong answer now says little about the same request a minute later.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgspec
import structlog

from tradepipe.producer.geoblock import GeoBlock
from tradepipe.producer.metrics import ProducerMetrics

log = structlog.get_logger(__name__)

AGG_TRADES_WEIGHT = 4
KLINES_WEIGHT = 2  # /api/v3/klines, any limit up to 1000
EXCHANGE_INFO_WEIGHT = 20
MAX_LIMIT = 1000


class RestError(Exception):
    """A request that did not give a page."""


class RestUnavailable(RestError):
    """Transient: the request may succeed if retried later."""


class RateLimited(RestUnavailable):
    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"HTTP {status}: retry after {retry_after:g} s")
        self.status, self.retry_after = status, retry_after


class RestRejected(RestError):
    """The server refused the request (e.g. unknown symbol)."""


class GeoBlocked(RestRejected):
    """HTTP 451: Binance refuses this region (see :mod:`tradepipe.producer.geoblock`)."""


class AggTradesClient:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        metrics: ProducerMetrics,
        weight_per_minute: int = 1200,
        timeout: float = 10.0,
        geo: GeoBlock | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/v3/aggTrades"
        self.klines_url = base_url.rstrip("/") + "/api/v3/klines"
        self.info_url = base_url.rstrip("/") + "/api/v3/exchangeInfo"
        self.geo = geo or GeoBlock()
        self.session, self.metrics = session, metrics
        self.weight_per_minute = weight_per_minute
        self.interval = 60.0 * AGG_TRADES_WEIGHT / weight_per_minute
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._next_at = 0.0  # monotonic
        self._lock = asyncio.Lock()

    async def fetch(self, symbol: str, from_id: int, limit: int = MAX_LIMIT) -> list[Any]:
        """Up to ``limit`` aggTrades of ``symbol`` from id ``from_id`` (inclusive), in id order."""
        params = {"symbol": symbol.upper(), "fromId": str(from_id), "limit": str(limit)}
        return await self._get_list(self.url, params, AGG_TRADES_WEIGHT)

    async def newest(self, symbol: str) -> list[Any]:
        """The most recent aggTrade of ``symbol`` (``[]`` if it never traded)."""
        params = {"symbol": symbol.upper(), "limit": "1"}
        return await self._get_list(self.url, params, AGG_TRADES_WEIGHT)

    async def fetch_window(
        self, symbol: str, start_ms: int, end_ms: int, limit: int = MAX_LIMIT
    ) -> list[Any]:
        """Up to ``limit`` aggTrades of ``symbol`` with trade time in ``start_ms..end_ms``
        (inclusive, less than an hour apart), in id order; page on with :meth:`fetch`."""
        params = {
            "symbol": symbol.upper(), "startTime": str(start_ms), "endTime": str(end_ms),
            "limit": str(limit),
        }  # fmt: skip
        return await self._get_list(self.url, params, AGG_TRADES_WEIGHT)

    async def klines(
        self, symbol: str, start_ms: int, end_ms: int, limit: int = MAX_LIMIT
    ) -> list[Any]:
        """Up to ``limit`` 1-minute klines of ``symbol`` opening in ``start_ms..end_ms``."""
        params = {
            "symbol": symbol.upper(), "interval": "1m", "startTime": str(start_ms),
            "endTime": str(end_ms), "limit": str(limit),
        }  # fmt: skip
        return await self._get_list(self.klines_url, params, KLINES_WEIGHT)

    async def exchange_info(self) -> dict[str, Any]:
        """``GET /api/v3/exchangeInfo`` (every symbol; weight 20)."""
        data = await self._get(self.info_url, {}, EXCHANGE_INFO_WEIGHT)
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise RestUnavailable(f"GET {self.info_url}: answer has no symbols list")
        return data

    async def _get_list(self, url: str, params: dict[str, str], weight: int) -> list[Any]:
        """:meth:`_get` whose answer must be a JSON array."""
        data = await self._get(url, params, weight)
        if not isinstance(data, list):
            raise RestUnavailable(f"GET {url}: answer is not a JSON array")
        return data

    async def _get(self, url: str, params: dict[str, str], weight: int) -> Any:
        """One paced GET of JSON (the module docstring's rules)."""
        async with self._lock:  # requests start one at a time, paced; one slow answer
            wait = self._next_at - time.monotonic()  # does not hold up the next request
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_at = time.monotonic() + self.interval * weight / AGG_TRADES_WEIGHT
        try:
            async with self.session.get(url, params=params, timeout=self.timeout) as resp:
                body = await resp.read()
                status, headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.rest_requests.labels("error").inc()
            raise RestUnavailable(f"GET {url}: {exc!r}") from exc
        self.metrics.rest_requests.labels(str(status)).inc()
        self._respect_weight(headers.get("X-MBX-USED-WEIGHT-1M"))
        if status in (418, 429):
            retry_after = _seconds(headers.get("Retry-After"), default=60.0)
            log.error("rest_rate_limited", status=status, retry_after=retry_after)
            self._next_at = time.monotonic() + retry_after
            raise RateLimited(status, retry_after)
        if status == 451:
            self.geo.refused("rest", url)
            raise GeoBlocked(f"GET {url}: HTTP 451 (restricted region)")
        self.geo.answered("rest")
        if status >= 500 or status == 403:
            raise RestUnavailable(f"GET {url}: HTTP {status}: {body[:100]!r}")
        if status != 200:
            raise RestRejected(f"GET {url} {params}: HTTP {status}: {body[:200]!r}")
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise RestUnavailable(f"GET {url}: answer is not JSON: {exc}") from exc

    def _respect_weight(self, used: str | None) -> None:
        if used is None or not used.isdigit():
            return
        if int(used) >= self.weight_per_minute:
            until_next_minute = 60.0 - time.time() % 60.0 + 0.5
            self._next_at = max(self._next_at, time.monotonic() + until_next_minute)
            log.warning("rest_weight_budget_used", used=int(used), pause=round(until_next_minute))


def _seconds(text: str | None, default: float) -> float:
    try:
        return max(0.0, float(text)) if text is not None else default
    except ValueError:
        return default
