"""Fault injection over HTTP, for when the emulator runs as a separate process (``/_control/``).

| request | effect |
|---|---|
| ``GET  /_control/status`` | published count (total, per symbol), connections, clock, counters |
| ``POST /_control/drop[?at=N&refuse=S]`` | cut every WebSocket (no close frame); at N published |
| ``POST /_control/list?symbol=S`` | a tape symbol starts trading (``exchangeInfo``: TRADING) |
| ``POST /_control/delist?symbol=S`` | a symbol stops trading (``exchangeInfo``: BREAK) |
| ``POST /_control/refuse?seconds=S`` | answer WebSocket handshakes HTTP 503 for S s |
| ``POST /_control/rest_fail?status=C&seconds=S`` | aggTrades answers HTTP C for S s |
| ``POST /_control/rest_lag?seconds=S`` | for S s, REST shows only what is published now |
| ``POST /_control/geo_block[?on=0]`` | HTTP 451 to handshakes and REST (``on=0`` lifts it) |
| ``POST /_control/inject[?stream=S]`` | send the request body verbatim to every connection |
| ``POST /_control/shutdown`` | send Binance's ``serverShutdown`` event |
| ``POST /_control/expire`` | close every connection as the 24-hour limit does |
| ``POST /_control/pause``, ``/_control/resume``, ``/_control/start`` | drive the clock |

``drop`` with ``refuse=S`` then refuses handshakes for S s, with ``stream=NAME`` cuts only the
connections carrying that stream, with ``id=C`` only connection C (a fault on one
connection); ``rest_fail`` takes ``retry_after``.
Each POST answers ``{"ok": true, ...}`` with what it affected. Served on the emulator's own
host:port (127.0.0.1 by default); ``--no-control`` turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from tradepipe.replay.server import Emulator


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def number(request: web.Request, name: str, default: float | None = None) -> float:
    text = request.query.get(name)
    if text is None and default is not None:
        return default
    try:
        return float(text or "")
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: a number is required") from None


def control_routes(emu: Emulator) -> list[web.RouteDef]:  # noqa: C901 - one handler per route
    async def status(request: web.Request) -> web.Response:
        return _json(emu.status())

    async def drop(request: web.Request) -> web.Response:
        refuse = number(request, "refuse", 0.0)
        stream = request.query.get("stream")
        if "at" in request.query:
            emu.drop_at(int(number(request, "at")), refuse, stream)
            return _json({"ok": True, "armed": True})
        cid = int(number(request, "id")) if "id" in request.query else None
        dropped = emu.drop_connections(stream, cid)
        if refuse > 0:
            emu.refuse_connections(refuse)
        return _json({"ok": True, "dropped": dropped})

    async def refuse(request: web.Request) -> web.Response:
        emu.refuse_connections(number(request, "seconds"))
        return _json({"ok": True})

    async def rest_fail(request: web.Request) -> web.Response:
        status = int(number(request, "status"))
        emu.rest.fail(status, number(request, "seconds"), int(number(request, "retry_after", 1)))
        return _json({"ok": True})

    async def rest_lag(request: web.Request) -> web.Response:
        emu.rest.lag(number(request, "seconds"))
        return _json({"ok": True})

    async def geo_block(request: web.Request) -> web.Response:
        emu.geo_block(request.query.get("on", "1") != "0")
        return _json({"ok": True, "geo_blocked": emu.geo_blocked})

    async def inject(request: web.Request) -> web.Response:
        body = await request.read()
        if not body:
            raise web.HTTPBadRequest(text="inject: the request body is the message to send")
        sent = emu.inject_raw(body, request.query.get("stream"))
        return _json({"ok": True, "sent_to": sent})

    async def shutdown(request: web.Request) -> web.Response:
        return _json({"ok": True, "sent_to": emu.send_server_shutdown()})

    async def expire(request: web.Request) -> web.Response:
        return _json({"ok": True, "closed": emu.expire_connections()})

    async def pause(request: web.Request) -> web.Response:
        emu.pause()
        return _json({"ok": True, "paused": emu.clock.paused})

    async def resume(request: web.Request) -> web.Response:
        emu.resume()
        return _json({"ok": True, "paused": emu.clock.paused})

    async def listing(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        change = emu.list_symbol if request.path.endswith("/list") else emu.delist_symbol
        if not change(symbol):
            raise web.HTTPBadRequest(text=f"symbol {symbol!r} is not on the tape")
        status = emu.market.status[symbol.upper()]
        return _json({"ok": True, "symbol": symbol.upper(), "status": status})

    async def start(request: web.Request) -> web.Response:
        emu.start_clock()
        return _json({"ok": True, "started": emu.clock.started})

    return [
        web.get("/_control/status", status),
        web.post("/_control/drop", drop),
        web.post("/_control/refuse", refuse),
        web.post("/_control/rest_fail", rest_fail),
        web.post("/_control/rest_lag", rest_lag),
        web.post("/_control/geo_block", geo_block),
        web.post("/_control/inject", inject),
        web.post("/_control/shutdown", shutdown),
        web.post("/_control/expire", expire),
        web.post("/_control/pause", pause),
        web.post("/_control/resume", resume),
        web.post("/_control/start", start),
        web.post("/_control/list", listing),
        web.post("/_control/delist", listing),
    ]
