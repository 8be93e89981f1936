"""``/metrics`` and ``/healthz`` on one small aiohttp server (default 127.0.0.1:9108).

``/metrics`` renders a prometheus-client :class:`CollectorRegistry` (each service passes its
own, so several can live in one process, e.g. in tests or ``tradepipe run``). ``/healthz``
calls the service's :data:`HealthCheck`: 200 ``ok`` when healthy, 503 and the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str = "ok"


HealthCheck = Callable[[], Health]


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9108"`` -> ``("127.0.0.1", 9108)`` (IPv6 hosts may be bracketed)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsServer:
    """Serves ``registry`` at ``/metrics`` and ``health()`` at ``/healthz``.

    ``async with MetricsServer(...) as server:`` binds (port 0 picks a free one: see
    ``server.port``) and stops on exit.
    """

    def __init__(self, registry: CollectorRegistry, health: HealthCheck, listen: str) -> None:
        self.registry, self.health = registry, health
        self.host, self.port = split_listen(listen)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _healthz(self, request: web.Request) -> web.Response:
        health = self.health()
        return web.Response(status=200 if health.ok else 503, text=health.reason + "\n")
