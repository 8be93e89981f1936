"""The WebSocket side: one combined-stream connection (two during a rollover), kept open.

Binance-specific policy, on top of the ``websockets`` client (which answers the server's pings
with pongs by itself and sends its own keep-alive ping every 20 s: 2 of our 5 allowed incoming
messages per second, at most):

1. Subscription is by URL (``/stream?streams=a@aggTrade/b@aggTrade``): we send no JSON control
   messages, so the 5 messages/s limit is never approached; the config caps streams at 1024.
2. Reconnects wait a capped exponential backoff with full jitter (:class:`Backoff`), reset
   once a connection delivered its first message (so the reconnect after a drop goes at once:
   the market trades on meanwhile), and never exceed 100 attempts per 5 minutes (Binance
   allows 300 per IP).
3. Rollover: ``rollover_seconds`` after connecting (23.5 h, before Binance's 24 h cut), or at a
   ``serverShutdown`` event, a second connection is opened *before* the first is closed; the
   old one is closed once the new one delivered a message (or after ``overlap_seconds``). The
   sequencer drops the overlap's duplicates.
4. A connection that ends without us closing it means trades may have been missed: the intake
   is told, and REST fills whatever is missing. A connection's first message is told too
   (:meth:`Intake.delivering`): only REST asked after it may end the catch-up (intake rule 1).
   A connection that stays open ``quiet_epoch_seconds`` without a message (a quiet market)
   counts as delivering then: its subscription is live since the handshake, so REST asked
   that much later holds everything before it; the catch-up ends instead of polling REST.
5. A reader never dies silently: an unexpected exception while handling a message (a bug, or
   input the parser does not cover) is logged with its traceback, counted in
   ``tradepipe_ws_reader_errors_total``, and the connection is cut and replaced (rule 4 then
   backfills). Whatever way a reader ends, its socket is closed: none is left open, answering
   pings, with nobody reading.
6. HTTP 451 at the handshake (a restricted region) is said once, with the remedy
   (:mod:`tradepipe.producer.geoblock`); the attempts go on with the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tradepipe.producer.backoff import AttemptLimiter, Backoff
from tradepipe.producer.geoblock import GeoBlock
from tradepipe.producer.intake import Intake, Signal
from tradepipe.producer.metrics import ProducerMetrics

log = structlog.get_logger(__name__)


def stream_url(base: str, symbols: list[str]) -> str:
    streams = "/".join(f"{s.lower()}@aggTrade" for s in symbols)
    return f"{base.rstrip('/')}/stream?streams={streams}"


class Connection:
    """One open WebSocket and its reader."""

    def __init__(
        self,
        ws: ClientConnection,
        conn_id: int,
        intake: Intake,
        metrics: ProducerMetrics,
        on_first: Callable[[Connection], None] = lambda conn: None,
    ) -> None:
        self.ws, self.id, self.intake, self.metrics = ws, conn_id, intake, metrics
        self.on_first = on_first
        self.opened_at = time.monotonic()
        self.first_message = asyncio.Event()
        self.shutdown_announced = asyncio.Event()
        self.closed = asyncio.Event()
        self.closing = False  # we asked for the close
        self.messages = 0

    async def read(self) -> None:
        live = self.intake.live
        try:
            async for message in self.ws:
                self.messages += 1
                if live(message) is Signal.SERVER_SHUTDOWN:
                    self.shutdown_announced.set()
                if not self.first_message.is_set():
                    self.first_message.set()
                    self.on_first(self)
        except ConnectionClosed as exc:
            if not self.closing:
                log.warning("ws_connection_lost", conn=self.id, error=str(exc))
        except Exception:  # rule 5: recovered by a new connection, never silent
            self.metrics.reader_errors.inc()
            log.exception("ws_reader_failed", conn=self.id, messages=self.messages)
        finally:
            if self.ws.transport is not None and not self.ws.transport.is_closing():
                self.ws.transport.abort()  # rule 5: no socket left open with nobody reading
            self.closed.set()
            log.info("ws_closed", conn=self.id, messages=self.messages, by_us=self.closing,
                     code=self.ws.close_code, reason=self.ws.close_reason,
                     lived_s=round(time.monotonic() - self.opened_at, 1))  # fmt: skip

    async def close(self) -> None:
        self.closing = True
        await self.ws.close()


class Feed:
    def __init__(
        self,
        url: str,
        intake: Intake,
        metrics: ProducerMetrics,
        rollover_seconds: float = 23.5 * 3600,
        backoff: Backoff | None = None,
        limiter: AttemptLimiter | None = None,
        overlap_seconds: float = 5.0,
        open_timeout: float = 10.0,
        quiet_epoch_seconds: float = 5.0,
        on_connected: Callable[[], None] = lambda: None,
        geo: GeoBlock | None = None,
    ) -> None:
        self.url, self.intake, self.metrics = url, intake, metrics
        self.rollover_seconds, self.overlap_seconds = rollover_seconds, overlap_seconds
        self.open_timeout = open_timeout
        self.quiet_epoch_seconds = quiet_epoch_seconds
        self.backoff = backoff or Backoff()
        self.limiter = limiter or AttemptLimiter()
        self.on_connected = on_connected
        self.geo = geo or GeoBlock()
        self.last_attempt_at: float | None = None  # monotonic; progress for the watchdog
        self.open: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._connected_once = False

    @property
    def connected(self) -> bool:
        return bool(self.open)

    def stop(self) -> None:
        """Stop reading: close every connection and return from :meth:`run`."""
        self._stop.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                retiring: Connection | None = None
                while not self._stop.is_set():
                    conn = await self._connect(tasks)
                    if conn is None:
                        break
                    if retiring is not None:
                        tasks.create_task(self._retire(retiring, conn))
                    why = await self._watch(conn)
                    retiring = None
                    if why == "closed":
                        self.backoff.connection_ended(
                            time.monotonic() - conn.opened_at, conn.first_message.is_set()
                        )
                    elif why in ("rollover", "serverShutdown"):
                        self.metrics.rollovers.inc()
                        log.info("ws_rollover", conn=conn.id, why=why)
                        retiring = conn
                for conn in list(self.open.values()):
                    await conn.close()
        finally:
            for conn in list(self.open.values()):  # cancelled or crashed: cut what is left
                conn.closing = True
                if conn.ws.transport is not None:
                    conn.ws.transport.abort()

    async def _quiet_epoch(self, conn: Connection) -> None:
        """Rule 4: a quiet but open connection counts as delivering after a while."""
        waits = [
            asyncio.ensure_future(conn.first_message.wait()),
            asyncio.ensure_future(conn.closed.wait()),
        ]
        try:
            done, _ = await asyncio.wait(waits, timeout=self.quiet_epoch_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            for fut in waits:
                fut.cancel()
        if not done and not conn.closed.is_set() and not conn.first_message.is_set():
            log.info("ws_quiet", conn=conn.id, seconds=self.quiet_epoch_seconds)
            self.intake.delivering()

    def _first_message(self, conn: Connection) -> None:
        self.backoff.succeeded()  # rule 2
        self.intake.delivering()  # rule 4

    async def _connect(self, tasks: asyncio.TaskGroup) -> Connection | None:
        """Open a connection (retrying as rule 2 says); ``None`` once stopped."""
        while True:
            now = time.monotonic()
            wait = max(self.backoff.delay(), self.limiter.wait_for(now))
            if wait > 0:
                log.info("ws_reconnect_wait", seconds=round(wait, 2))
            if await self._stopped_within(wait):
                return None
            self.limiter.record(time.monotonic())
            self.last_attempt_at = time.monotonic()
            try:
                ws = await connect(
                    self.url,
                    open_timeout=self.open_timeout,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                    max_size=4 * 2**20,  # docs/operations.md "Poison records": bigger -> 1009
                    compression=None,
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code == 451:
                    self.geo.refused("ws", self.url)  # rule 6
                self.metrics.connect_failures.inc()
                self.backoff.failed()
                error = (
                    f"HTTP {exc.response.status_code}"
                    if isinstance(exc, InvalidStatus)
                    else repr(exc)
                )
                log.warning("ws_connect_failed", url=self.url, error=error)
                continue
            self.geo.answered("ws")
            conn = Connection(ws, next(self._ids), self.intake, self.metrics, self._first_message)
            self.open[conn.id] = conn
            self.metrics.connections.set(len(self.open))
            if self._connected_once:
                self.metrics.reconnects.inc()
            self._connected_once = True
            log.info("ws_connected", conn=conn.id, url=self.url)
            tasks.create_task(self._read(conn))
            tasks.create_task(self._quiet_epoch(conn))
            self.on_connected()
            return conn

    async def _read(self, conn: Connection) -> None:
        try:
            await conn.read()
        finally:
            self.open.pop(conn.id, None)
            self.metrics.connections.set(len(self.open))
            if not conn.closing:  # rule 4
                others = any(c.first_message.is_set() for c in self.open.values())
                self.intake.disconnected(others_delivering=others)

    async def _watch(self, conn: Connection) -> str:
        """Wait until this connection closes, is due for rollover, or we are stopped."""
        waits = {
            "closed": asyncio.ensure_future(conn.closed.wait()),
            "serverShutdown": asyncio.ensure_future(conn.shutdown_announced.wait()),
            "stop": asyncio.ensure_future(self._stop.wait()),
        }
        try:
            done, _ = await asyncio.wait(
                waits.values(),
                timeout=max(0.0, conn.opened_at + self.rollover_seconds - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for fut in waits.values():
                fut.cancel()
        for why, fut in waits.items():
            if fut in done:
                return why
        return "rollover"

    async def _retire(self, old: Connection, new: Connection) -> None:
        """Close ``old`` once ``new`` delivers (or after the overlap time): rule 3."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.overlap_seconds):
                await new.first_message.wait()
        await old.close()

    async def _stopped_within(self, seconds: float) -> bool:
        if self._stop.is_set():
            return True
        if seconds <= 0:
            return False
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the awaited event fires, and a task that ignores its one cancellation
        # keeps a TaskGroup (and the process) waiting for ever
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()
