"""Binance's refusal of a region (HTTP 451), said once, plainly, with the remedy.

Binance answers HTTP 451 ("Unavailable For Legal Reasons") to WebSocket handshakes and REST
requests from restricted regions (US hosts among them). Retrying cannot help; the market-data
hosts can: ``wss://data-stream.binance.vision`` (the same streams) and
``https://data-api.binance.vision`` (the same ``/api/v3`` market data). The first refusal is
logged at error level with that remedy; ``/healthz`` keeps saying why until an answer comes
through again.
"""

from __future__ import annotations

import structlog

log = structlog.get_logger(__name__)

DATA_WS_URL = "wss://data-stream.binance.vision"
DATA_REST_URL = "https://data-api.binance.vision"
REMEDY = (
    f"use Binance's market-data-only hosts: feed.ws_url = {DATA_WS_URL} "
    f"(TRADEPIPE_FEED_WS_URL), feed.rest_url = {DATA_REST_URL} (TRADEPIPE_FEED_REST_URL)"
)


class GeoBlock:
    """Shared by the feed and the REST client: the first 451 of an episode is logged."""

    def __init__(self) -> None:
        self.blocked: dict[str, str] = {}  # "ws" / "rest" -> the URL that answered 451

    @property
    def reason(self) -> str | None:
        if not self.blocked:
            return None
        where = ", ".join(f"{k} {url}" for k, url in sorted(self.blocked.items()))
        return f"geo-blocked: Binance answered HTTP 451 ({where}); {REMEDY}"

    def refused(self, where: str, url: str) -> None:
        if where in self.blocked:
            return
        first = not self.blocked
        self.blocked[where] = url
        if first:
            log.error("geo_blocked", where=where, url=url, status=451,
                      error="Binance refuses this region", remedy=REMEDY)  # fmt: skip

    def answered(self, where: str) -> None:
        self.blocked.pop(where, None)
