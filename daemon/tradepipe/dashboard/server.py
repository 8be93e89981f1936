"""The dashboard's HTTP server (aiohttp): one page, its static files, and a JSON API.

Routes:
- ``/``: the page (``static/index.html``); ``/static/{name}``: its script and stylesheet;
- ``/static/plotly.min.js``: the charting library, served from the installed ``plotly`` Python
  package (no CDN, no build step), gzip-compressed once in memory and cached by the browser;
- ``/api/symbols``, ``/api/minutes``, ``/api/checks``: see :mod:`tradepipe.dashboard.api`;
- ``/api/series``, ``/api/analysis``, ``/api/export``: see :mod:`tradepipe.dashboard.flow_api`;
- ``/openapi.json``: the OpenAPI 3.1 description of this API (``static/openapi.json``);
- ``/healthz``: 200 when the database answers, 503 and the reason otherwise.

A database failure answers 503 with ``{"error": ...}``; the page shows it and keeps polling.
``async with DashboardServer(reader, "127.0.0.1:8050") as server:`` binds (port 0 picks a free
one, see ``server.url``) and stops on exit.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.resources
import tempfile
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiohttp import web

from tradepipe.dashboard.api import BadRequest, checks_payload, minutes_payload, parse_request
from tradepipe.dashboard.flow_api import (
    CONTENT_TYPES,
    analysis_payload,
    export_format,
    export_range,
    series_payload,
)
from tradepipe.dashboard.reader import MinuteReader
from tradepipe.export.parquet import ExportError
from tradepipe.observability.http import split_listen
from tradepipe.store.ranges import RangeError
from tradepipe.store.reads import QueryError

log = structlog.get_logger("tradepipe.dashboard")

STATIC_TYPES = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "checks.js": "text/javascript",
    "openapi.json": "application/json",
}
# Plotly injects <style> elements; everything else comes from this origin.
CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str


def _asset(data: bytes, content_type: str) -> Asset:
    return Asset(data, gzip.compress(data, compresslevel=6, mtime=0), content_type)


def load_static(name: str) -> Asset:
    data = importlib.resources.files("tradepipe.dashboard").joinpath("static", name).read_bytes()
    return _asset(data, STATIC_TYPES[name])


def load_plotly() -> Asset:
    data = importlib.resources.files("plotly").joinpath("package_data", "plotly.min.js")
    return _asset(data.read_bytes(), "text/javascript")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(payload),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class DashboardServer:
    def __init__(self, reader: MinuteReader, listen: str = "127.0.0.1:8050") -> None:
        self.reader = reader
        self.host, self.port = split_listen(listen)
        self._assets: dict[str, Asset] = {}
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/symbols", self._symbols)
        app.router.add_get("/api/minutes", self._minutes)
        app.router.add_get("/api/checks", self._checks)
        app.router.add_get("/api/series", self._series)
        app.router.add_get("/api/analysis", self._analysis)
        app.router.add_get("/api/export", self._export)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        # Reading and compressing plotly (~5 MB) takes a moment: do it off the event loop, once.
        self._assets = await asyncio.to_thread(
            lambda: (
                {name: load_static(name) for name in STATIC_TYPES}
                | {"plotly.min.js": load_plotly()}
            )
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        log.info("dashboard listening", url=self.url)

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self.reader.close()

    async def __aenter__(self) -> DashboardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start, then wait until cancelled (the task group's way of stopping us)."""
        async with self:
            await asyncio.Event().wait()

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def _send(self, request: web.Request, name: str, cache: str) -> web.Response:
        asset = self._assets[name]
        headers = {
            "Cache-Control": cache,
            "Vary": "Accept-Encoding",
            "Content-Type": asset.content_type + "; charset=utf-8",
        }
        body = asset.body
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers["Content-Encoding"] = asset.gzipped, "gzip"
        return web.Response(body=body, headers=headers)

    async def _index(self, request: web.Request) -> web.Response:
        return self._send(request, "index.html", "no-cache")

    async def _openapi(self, request: web.Request) -> web.Response:
        return self._send(request, "openapi.json", "no-cache")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets or name == "index.html":
            raise web.HTTPNotFound()
        cache = "public, max-age=86400" if name == "plotly.min.js" else "no-cache"
        return self._send(request, name, cache)

    async def _symbols(self, request: web.Request) -> web.Response:
        try:
            return _json({"symbols": await self.reader.symbols()})
        except QueryError as exc:
            return self._unavailable(exc)

    async def _minutes(self, request: web.Request) -> web.Response:
        try:
            req = parse_request(request.query)
            return _json(await minutes_payload(self.reader, req))
        except BadRequest as exc:
            return _json({"error": str(exc)}, status=400)
        except QueryError as exc:
            return self._unavailable(exc)

    async def _checks(self, request: web.Request) -> web.Response:
        try:
            return _json(await checks_payload(self.reader, parse_request(request.query)))
        except BadRequest as exc:
            return _json({"error": str(exc)}, status=400)
        except QueryError as exc:
            return self._unavailable(exc)

    async def _series(self, request: web.Request) -> web.Response:
        try:
            return _json(await series_payload(self.reader, parse_request(request.query)))
        except BadRequest as exc:
            return _json({"error": str(exc)}, status=400)
        except QueryError as exc:
            return self._unavailable(exc)

    async def _analysis(self, request: web.Request) -> web.Response:
        try:
            return _json(await analysis_payload(self.reader, parse_request(request.query)))
        except BadRequest as exc:
            return _json({"error": str(exc)}, status=400)
        except QueryError as exc:
            return self._unavailable(exc)

    async def _export(self, request: web.Request) -> web.StreamResponse:
        """The range as a file: written to a temporary file in the read thread, then sent."""
        try:
            req, fmt = parse_request(request.query), export_format(request.query)
            rows, stem = await export_range(self.reader, req)
            with tempfile.TemporaryFile() as out:
                await self.reader.export(rows, fmt, out)
                out.seek(0)
                response = web.StreamResponse(
                    headers={
                        "Content-Type": CONTENT_TYPES[fmt],
                        "Content-Disposition": f'attachment; filename="{stem}.{fmt}"',
                        "Cache-Control": "no-store",
                    }
                )
                await response.prepare(request)
                while chunk := await asyncio.to_thread(out.read, 1 << 20):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except BadRequest as exc:
            return _json({"error": str(exc)}, status=400)
        except QueryError as exc:
            return self._unavailable(exc)
        except (RangeError, ExportError) as exc:
            log.error("dashboard export failed", error=str(exc))
            return _json({"error": str(exc)}, status=500)

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            await self.reader.symbols()
        except QueryError as exc:
            return web.Response(status=503, text=f"{exc}\n")
        return web.Response(text="ok\n")

    def _unavailable(self, exc: QueryError) -> web.Response:
        log.warning("dashboard query failed", error=str(exc))
        return _json({"error": str(exc)}, status=503)
