"""Fault injection over HTTP, for when the emulator runs as a separate process (``/_control/``).

| request | effect |
|---|---|
| ``GET  /_control/status`` | published count (total, per symbol), connections, clock, counters |
| ``POST /_control/drop`` | cut every WebSocket's TCP connection (no close frame) |
| ``POST /_control/inject[?stream=S]`` | send the request body verbatim to every connection |
| ``POST /_control/shutdown`` | send Binance's ``serverShutdown`` event |
| ``POST /_control/expire`` | close every connection as the 24-hour limit does |
| ``POST /_control/pause``, ``/_control/resume``, ``/_control/start`` | drive the clock |

Each POST answers ``{"ok": true, ...}`` with what it affected. Served on the emulator's own
host:port (127.0.0.1 by default); ``--no-control`` turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from tradepipe.replay.server import Emulator


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def control_routes(emu: Emulator) -> list[web.RouteDef]:
    async def status(request: web.Request) -> web.Response:
        return _json(emu.status())

    async def drop(request: web.Request) -> web.Response:
        return _json({"ok": True, "dropped": emu.drop_connections()})

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

    async def start(request: web.Request) -> web.Response:
        emu.start_clock()
        return _json({"ok": True, "started": emu.clock.started})

    return [
        web.get("/_control/status", status),
        web.post("/_control/drop", drop),
        web.post("/_control/inject", inject),
        web.post("/_control/shutdown", shutdown),
        web.post("/_control/expire", expire),
        web.post("/_control/pause", pause),
        web.post("/_control/resume", resume),
        web.post("/_control/start", start),
    ]
