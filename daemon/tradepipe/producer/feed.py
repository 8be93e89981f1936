"""The WebSocket side: one *shard* of the symbols on one combined-stream connection (two during
a rollover), kept open. :mod:`tradepipe.producer.shards` runs one :class:`Feed` per shard.

Binance-specific policy, on top of the ``websockets`` client (which answers the server's pings
with pongs by itself and sends its own keep-alive ping every 20 s: 2 of our 5 allowed incoming
messages per second, at most):

1. Subscription is by URL (``/stream?streams=a@aggTrade/b@aggTrade``) for as many streams as
   fit in :data:`URL_STREAMS_CHARS`; the others, and symbols added to the shard later, by
   ``SUBSCRIBE`` messages (``UNSUBSCRIBE`` for symbols dropped), at most
   :data:`SUBSCRIBE_CHUNK` streams each, one every :data:`CONTROL_INTERVAL` seconds (2.5/s,
   with the keep-alive ping and pong well under Binance's 5 incoming messages/s). A symbol
   counts as delivering (intake rule 1) from its URL connection's first message, or from the
   server's reply confirming its ``SUBSCRIBE``; an error reply is logged at error level and
   counted (``tradepipe_ws_subscribe_errors_total``): those symbols have no live stream on
   that connection (a catch-up of theirs cannot end; /healthz shows it) until the next one.
2. Reconnects wait a capped exponential backoff with full jitter (:class:`Backoff`), reset
   once a connection delivered its first message (so the reconnect after a drop goes at once:
   the market trades on meanwhile), and never exceed 100 attempts per 5 minutes (Binance
   allows 300 per IP).
3. Rollover: ``rollover_seconds`` after connecting (23.5 h, before Binance's 24 h cut), or at a
   ``serverShutdown`` event, a second connection is opened *before* the first is closed; the
   old one is closed once the new one delivered a message (or after ``overlap_seconds``). The
   sequencer drops the overlap's duplicates.
4. A connection that ends without us closing it means trades may have been missed on its
   shard's symbols (and only those): the intake is told, and REST fills whatever is missing.
   A connection's first message is told too (:meth:`Intake.delivering`): only REST asked
   after it may end the catch-up (intake rule 1).
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
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tradepipe.producer.backoff import AttemptLimiter, Backoff
from tradepipe.producer.geoblock import GeoBlock
from tradepipe.producer.intake import Intake, Signal
from tradepipe.producer.metrics import ProducerMetrics

log = structlog.get_logger(__name__)

URL_STREAMS_CHARS = 2000  # the streams= part of a URL at most (rule 1); the rest by SUBSCRIBE
SUBSCRIBE_CHUNK = 200  # streams per SUBSCRIBE / UNSUBSCRIBE message
CONTROL_INTERVAL = 0.4  # seconds between two control messages on one connection (rule 1)


def stream_url(base: str, symbols: list[str]) -> str:
    streams = "/".join(f"{s.lower()}@aggTrade" for s in symbols)
    return f"{base.rstrip('/')}/stream?streams={streams}"


def url_part(symbols: Sequence[str], budget: int = URL_STREAMS_CHARS) -> list[str]:
    """The leading symbols whose streams fit in ``budget`` characters (at least one)."""
    out: list[str] = []
    used = 0
    for symbol in symbols:
        used += len(symbol) + len("@aggTrade/")
        if out and used > budget:
            break
        out.append(symbol)
    return out


class _Reply(msgspec.Struct):
    """A control message's answer: ``{"result":null,"id":1}`` or ``{"code":2,"msg":..,"id":1}``."""

    id: int | str | None = None
    result: Any = None
    code: int | None = None
    msg: str | None = None


_REPLY_PREFIXES = ('{"result"', '{"code"', '{"id"')
_REPLY_PREFIXES_B = tuple(p.encode() for p in _REPLY_PREFIXES)


class Connection:
    """One open WebSocket and its reader."""

    def __init__(
        self,
        ws: ClientConnection,
        conn_id: int,
        intake: Intake,
        metrics: ProducerMetrics,
        on_first: Callable[[Connection], None] = lambda conn: None,
        url_symbols: Sequence[str] = (),
        shard: str = "0",
        on_reply: Callable[[Connection, str, list[str], _Reply], None] = lambda *a: None,
    ) -> None:
        self.ws, self.id, self.intake, self.metrics = ws, conn_id, intake, metrics
        self.on_first, self.on_reply = on_first, on_reply
        self.url_symbols = list(url_symbols)
        self.live: set[str] = set()  # symbols delivering on this connection (rule 1)
        self.pending: dict[int, tuple[str, list[str]]] = {}  # control request id -> (method, ..)
        self.controls: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None
        self._request_ids = itertools.count(1)
        self._counted = metrics.shard_messages.labels(shard)
        self.opened_at = time.monotonic()
        self.first_message = asyncio.Event()
        self.shutdown_announced = asyncio.Event()
        self.closed = asyncio.Event()
        self.closing = False  # we asked for the close
        self.messages = 0

    def request(self, method: str, symbols: Sequence[str]) -> None:
        """Queue ``SUBSCRIBE``/``UNSUBSCRIBE`` for ``symbols`` (sent paced: rule 1)."""
        for at in range(0, len(symbols), SUBSCRIBE_CHUNK):
            self.controls.put_nowait((method, list(symbols[at : at + SUBSCRIBE_CHUNK])))

    async def send_controls(self) -> None:
        """Send the queued control messages, one every :data:`CONTROL_INTERVAL` (rule 1)."""
        while True:
            method, symbols = await self.controls.get()
            request_id = next(self._request_ids)
            self.pending[request_id] = (method, symbols)
            params = [f"{s.lower()}@aggTrade" for s in symbols]
            await self.ws.send(msgspec.json.encode(
                {"method": method, "params": params, "id": request_id}).decode())  # fmt: skip
            log.info("ws_control_sent", conn=self.id, method=method, streams=len(params),
                     id=request_id)  # fmt: skip
            await asyncio.sleep(CONTROL_INTERVAL)

    def _reply(self, message: str | bytes) -> bool:
        """A control reply we are waiting for: handled here (True), not a market message."""
        prefixes = _REPLY_PREFIXES if isinstance(message, str) else _REPLY_PREFIXES_B
        if not message.startswith(prefixes):  # type: ignore[arg-type]
            return False
        try:
            reply = msgspec.json.decode(message, type=_Reply)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        if not isinstance(reply.id, int) or reply.id not in self.pending:
            return False
        method, symbols = self.pending.pop(reply.id)
        self.on_reply(self, method, symbols, reply)
        return True

    async def read(self) -> None:
        live = self.intake.live
        counted = self._counted
        try:
            async for message in self.ws:
                self.messages += 1
                counted.inc()
                if self.pending and len(message) < 512 and self._reply(message):
                    pass
                elif live(message) is Signal.SERVER_SHUTDOWN:
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
            if self.sender is not None:
                self.sender.cancel()
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
    """One shard: its symbols (upper-case, in order) on one connection at a time."""

    def __init__(
        self,
        base_url: str,
        symbols: Sequence[str],
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
        shard: int = 0,
    ) -> None:
        self.base_url, self.intake, self.metrics = base_url, intake, metrics
        self.symbols = [s.upper() for s in symbols]
        self.shard = str(shard)
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

    @property
    def url(self) -> str:
        """The URL of the next connection (rule 1: the streams that fit; the rest by message)."""
        return stream_url(self.base_url, url_part(self.symbols))

    def add(self, symbols: Sequence[str]) -> None:
        """Stream ``symbols`` too: ``SUBSCRIBE`` on the open connections (rule 1)."""
        new = [s.upper() for s in symbols if s.upper() not in self.symbols]
        self.symbols.extend(new)
        self.metrics.shard_streams.labels(self.shard).set(len(self.symbols))
        for conn in self.open.values():
            conn.request("SUBSCRIBE", new)

    def remove(self, symbols: Sequence[str]) -> None:
        """Stop streaming ``symbols``: ``UNSUBSCRIBE`` on the open connections."""
        gone = {s.upper() for s in symbols} & set(self.symbols)
        self.symbols = [s for s in self.symbols if s not in gone]
        self.metrics.shard_streams.labels(self.shard).set(len(self.symbols))
        for conn in self.open.values():
            conn.live -= gone
            conn.request("UNSUBSCRIBE", sorted(gone))

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
            log.info("ws_quiet", conn=conn.id, shard=self.shard, seconds=self.quiet_epoch_seconds)
            self._url_streams_live(conn)

    def _first_message(self, conn: Connection) -> None:
        self.backoff.succeeded()  # rule 2
        self._url_streams_live(conn)  # rule 4

    def _url_streams_live(self, conn: Connection) -> None:
        live = [s for s in conn.url_symbols if s in self.symbols and s not in conn.live]
        conn.live.update(live)
        self.intake.delivering(live)

    def _replied(self, conn: Connection, method: str, symbols: list[str], reply: _Reply) -> None:
        """Rule 1: a ``SUBSCRIBE`` confirmed makes its symbols live; an error is counted."""
        if reply.code is not None:
            self.metrics.subscribe_errors.inc()
            log.error("ws_subscribe_failed", conn=conn.id, shard=self.shard, method=method,
                      code=reply.code, msg=reply.msg, streams=len(symbols),
                      symbols=symbols[:20])  # fmt: skip
            return
        if method == "SUBSCRIBE":
            live = [s for s in symbols if s in self.symbols and s not in conn.live]
            conn.live.update(live)
            log.info("ws_subscribed", conn=conn.id, shard=self.shard, streams=len(live))
            self.intake.delivering(live)

    async def _connect(self, tasks: asyncio.TaskGroup) -> Connection | None:
        """Open a connection (retrying as rule 2 says); ``None`` once stopped."""
        while True:
            wait = self.backoff.delay()
            if wait > 0:
                log.info("ws_reconnect_wait", shard=self.shard, seconds=round(wait, 2))
            if await self._stopped_within(wait):
                return None
            # the limiter is shared by every shard: checked and taken with no await between
            while (held := self.limiter.wait_for(time.monotonic())) > 0:
                log.info("ws_attempts_limited", shard=self.shard, seconds=round(held, 2))
                if await self._stopped_within(held):
                    return None
            self.limiter.record(time.monotonic())
            self.last_attempt_at = time.monotonic()
            in_url = url_part(self.symbols)
            url = stream_url(self.base_url, in_url)
            try:
                ws = await connect(
                    url,
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
                log.warning("ws_connect_failed", shard=self.shard, url=url[:200], error=error)
                continue
            self.geo.answered("ws")
            conn = Connection(
                ws, next(self._ids), self.intake, self.metrics, self._first_message,
                url_symbols=in_url, shard=self.shard, on_reply=self._replied,
            )  # fmt: skip
            self.open[conn.id] = conn
            self.metrics.connections.inc()
            self.metrics.shard_connected.labels(self.shard).set(1)
            if self._connected_once:
                self.metrics.reconnects.inc()
                self.metrics.shard_reconnects.labels(self.shard).inc()
            self._connected_once = True
            # symbols added or dropped while connecting, and those beyond the URL (rule 1)
            rest = [s for s in self.symbols if s not in set(in_url)]
            gone = [s for s in in_url if s not in set(self.symbols)]
            conn.request("SUBSCRIBE", rest)
            conn.request("UNSUBSCRIBE", gone)
            log.info("ws_connected", conn=conn.id, shard=self.shard, url=url[:200],
                     streams_in_url=len(in_url), streams_by_message=len(rest))  # fmt: skip
            conn.sender = tasks.create_task(conn.send_controls())
            tasks.create_task(self._read(conn))
            tasks.create_task(self._quiet_epoch(conn))
            self.on_connected()
            return conn

    async def _read(self, conn: Connection) -> None:
        try:
            await conn.read()
        finally:
            if self.open.pop(conn.id, None) is not None:
                self.metrics.connections.dec()
            self.metrics.shard_connected.labels(self.shard).set(1 if self.open else 0)
            if not conn.closing:  # rule 4: this shard's symbols only
                elsewhere = set().union(*(c.live for c in self.open.values()))
                self.intake.disconnected(symbols=self.symbols, live_elsewhere=elsewhere)

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
        """Close ``old`` once ``new`` delivers every symbol (or after the overlap time): rule 3.
        Symbols the new one does not deliver yet then catch up (rule 4) when ``old`` closes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.overlap_seconds):
                await new.first_message.wait()
                while not set(self.symbols) <= new.live and not new.closed.is_set():  # noqa: ASYNC110 - a condition over many replies
                    await asyncio.sleep(0.05)
        await old.close()
        behind = [s for s in self.symbols if s in old.live and s not in new.live]
        if behind:
            log.warning("ws_rollover_incomplete", shard=self.shard, symbols=behind[:20],
                        count=len(behind))  # fmt: skip
            self.intake.disconnected(symbols=behind)

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
