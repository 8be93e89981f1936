"""The emulator: one aiohttp server (WebSocket streams + REST + control) over a tape, and the
publisher that moves the shared clock along the tape.

Rules (what makes it behave like the exchange):
1. One clock for everyone (:mod:`tradepipe.replay.clock`); it starts when the first client
   subscribes (or at once with ``start_now``). A trade is *published* when the clock reaches it.
2. Publishing a trade: it joins the REST view (:mod:`tradepipe.replay.store`), is written to the
   record file, and is queued to every connection subscribed to its stream at that moment.
   Nothing is ever sent again: a client that was not connected gets it only from REST.
3. Lossless under load: when a connection's queue passes the high-water mark the publisher waits
   for it (the clock lags rather than dropping trades); a client still behind after
   ``slow_client_seconds`` is disconnected, as Binance does with slow consumers.
4. At the end of the tape the clock stops, connections stay open and idle, and a line
   ``replay finished: N trades`` is reported — or, with ``loop``, the tape starts over with
   ids and times shifted past the previous pass, so nothing repeats.

The fault-injection methods (``drop_connections``, ``drop_at``, ``refuse_connections``,
``inject_raw``, ``send_server_shutdown``, ``expire_connections``, ``pause``/``resume``,
``geo_block``, and ``rest.fail``/``rest.lag`` for REST) are the Python API for in-process
tests; :mod:`tradepipe.replay.control` exposes the same over HTTP.

5. Refused connections (``refuse_connections``): until the time is up, every WebSocket
   handshake is answered HTTP 503 while trading (and REST) go on. ``drop_at(n)`` cuts every
   connection exactly when ``n`` trades have been published, before trade ``n + 1`` is queued
   (any of the ``n`` still in a send queue is lost with the connection, as on a real cut), so a
   test can place a drop a chosen time before the market goes quiet.
6. Geo-blocking (``geo_block``): HTTP 451 with Binance's text to handshakes and REST, as
   Binance answers requests from restricted regions.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import msgspec
from aiohttp import web

from tradepipe.core import Trade
from tradepipe.replay.clock import ReplayClock
from tradepipe.replay.connection import CLOSE_EXPIRED, CLOSE_SHUTDOWN, CLOSE_SLOW, Connection
from tradepipe.replay.malformed import Malformed, make_malformed, schedule
from tradepipe.replay.market import Market
from tradepipe.replay.options import ReplayOptions
from tradepipe.replay.protocol import Subscriptions, stream_of, streams_from_path
from tradepipe.replay.rest import GEO_BLOCK_MSG, RestApi
from tradepipe.replay.store import PublishedTrades
from tradepipe.replay.tape import Tape

LOOP_GAP_MS = 1000  # pause in data time between two passes of a looped tape
# Published texts are built by formatting, not encoded from a dict per trade: the REST history
# and the send queues hold one per trade, exactly as long as its text.
_REST_FORMAT = b'{"a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}'
_EVENT_FORMAT = (
    b'{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,'
    b'"m":%s,"M":true}'
)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Emulator:
    def __init__(
        self, tape: Tape, options: ReplayOptions | None = None, log: Callable[[str], None] = _stderr
    ) -> None:
        self.tape = tape
        self.options = options or ReplayOptions()
        self.log = log
        self.clock = ReplayClock(self.options.speed, tape.first_time_ms)
        self.published = PublishedTrades(self.options.rest_history)
        for symbol in tape.symbols:
            self.published.add_symbol(symbol)
        self.market = Market(tape.symbols, self.options.unlisted)
        self.rest = RestApi(self.published, self.options.rest_weight_limit, self.market)
        self.connections: dict[int, Connection] = {}
        self.finished = asyncio.Event()
        self.malformed_sent = 0
        self.injected = 0
        self.cycles = 0
        self.connections_total = 0
        self._next_cid = 0
        self._started = asyncio.Event()
        # data time of the next trade the publisher will publish (a pause freezes below it)
        self._pending_ms = tape.first_time_ms
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever published trades were handed out
        self._malformed_plan = schedule(self.options.malformed, len(tape.trades), self.options.seed)
        self._malformed_rng = random.Random(self.options.seed)
        self._record: IO[bytes] | None = None
        self._runner: web.AppRunner | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._periods = _loop_periods(tape)
        self.host, self.port = self.options.host, 0
        self._refuse_until = 0.0  # monotonic (rule 5)
        # (published count, refuse seconds, only connections carrying this stream)
        self._drop_at: tuple[int, float, str | None] | None = None
        self.geo_blocked = False
        self.refused = 0  # handshakes refused (rule 5, 6)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self.options.record_path:
            self._record = await asyncio.to_thread(Path(self.options.record_path).open, "wb")
        app = web.Application()
        app.add_routes(
            [
                web.get("/ws", self._ws_handler),
                web.get("/ws/{streams:.+}", self._ws_handler),
                web.get("/stream", self._ws_handler),
                *self.rest.routes(),
            ]
        )
        if self.options.control:
            from tradepipe.replay.control import control_routes

            app.add_routes(control_routes(self))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.options.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.options.host, self.options.port))
        self.host, self.port = sock.getsockname()[:2]
        await web.SockSite(self._runner, sock).start()
        self._publisher = asyncio.create_task(self._publish_all(), name="replay-publisher")
        if self.options.start_now:
            self.start_clock()

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        for conn in list(self.connections.values()):
            conn.request_close(*CLOSE_SHUTDOWN)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._record is not None:
            self._record.close()
            self._record = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_failed(self) -> BaseException:
        """Return the publisher's exception if it ever fails (a bug); wait forever otherwise."""
        task = self._publisher
        if task is None:
            raise RuntimeError("the emulator is not running")
        await asyncio.wait([task])
        error = None if task.cancelled() else task.exception()
        if error is not None:
            return error
        await asyncio.Event().wait()  # finished normally: nothing to report, ever
        raise AssertionError("unreachable")

    @property
    def ws_url(self) -> str:
        return f"ws://{_netloc(self.host, self.port)}"

    @property
    def rest_url(self) -> str:
        return f"http://{_netloc(self.host, self.port)}"

    # -- the clock ---------------------------------------------------------------------
    def start_clock(self) -> None:
        if not self.clock.started:
            self.clock.start()
            self._started.set()
            self._wake.set()
            self.log(f"replay clock started at speed {self.options.speed:g}")

    def pause(self) -> None:
        """Nothing more is published until :meth:`resume` — not even trades the clock has
        already reached but the publisher has not sent yet (clock rule 3)."""
        self.clock.pause(self._pending_ms)
        self._wake.set()

    def resume(self) -> None:
        self.clock.resume()
        self._wake.set()

    async def wait_published(self, count: int) -> None:
        """Wait until at least ``count`` trades are published (tests bound it with a timeout)."""
        while self.published.count < count and not self.finished.is_set():
            self._progress.clear()
            await self._progress.wait()

    # -- faults ------------------------------------------------------------------------
    def drop_connections(self, stream: str | None = None, cid: int | None = None) -> int:
        """Cut every connection's TCP stream without a close frame (or only those subscribed
        to ``stream``, or connection ``cid``: a fault on one connection); returns how many."""
        conns = [
            c
            for c in self.connections.values()
            if (stream is None or stream in c.subs.streams) and (cid is None or c.cid == cid)
        ]
        for conn in conns:
            conn.abort()
        return len(conns)

    def refuse_connections(self, seconds: float) -> None:
        """Answer every WebSocket handshake HTTP 503 for ``seconds`` (rule 5)."""
        self._refuse_until = time.monotonic() + seconds

    def drop_at(
        self, published: int, refuse_seconds: float = 0.0, stream: str | None = None
    ) -> None:
        """Drop every connection (or those subscribed to ``stream``) when ``published`` trades
        are out, then refuse new ones for ``refuse_seconds`` (rule 5)."""
        self._drop_at = (published, refuse_seconds, stream)

    def list_symbol(self, symbol: str) -> bool:
        """``symbol`` (on the tape) starts trading now (:mod:`tradepipe.replay.market`)."""
        listed = self.market.list(symbol)
        if listed:
            self.log(f"listed {symbol.upper()} after {self.published.count} trades")
        return listed

    def delist_symbol(self, symbol: str) -> bool:
        """``symbol`` stops trading now: its remaining tape trades are never published."""
        delisted = self.market.delist(symbol)
        if delisted:
            self.log(f"delisted {symbol.upper()} after {self.published.count} trades")
        return delisted

    def geo_block(self, blocked: bool = True) -> None:
        """Answer handshakes and REST with HTTP 451 (rule 6)."""
        self.geo_blocked = self.rest.faults.geo_blocked = blocked

    def expire_connections(self) -> int:
        """Close every connection as the 24-hour limit does."""
        conns = list(self.connections.values())
        for conn in conns:
            conn.request_close(*CLOSE_EXPIRED)
        return len(conns)

    def inject_raw(self, text: str | bytes, stream: str | None = None) -> int:
        """Send ``text`` verbatim to every connection (or those subscribed to ``stream``)."""
        payload = text.encode() if isinstance(text, str) else text
        sent = 0
        for conn in list(self.connections.values()):
            if stream is None or stream in conn.subs.streams:
                conn.push(payload)
                sent += 1
        self.injected += sent
        return sent

    def send_server_shutdown(self) -> int:
        """Send Binance's ``serverShutdown`` event (clients should reconnect now)."""
        event = {"e": "serverShutdown", "E": int(time.time() * 1000)}
        raw = msgspec.json.encode(event)
        wrapped = msgspec.json.encode({"stream": "!serverShutdown", "data": event})
        conns = list(self.connections.values())
        for conn in conns:
            conn.push(wrapped if conn.subs.combined else raw)
        return len(conns)

    def status(self) -> dict[str, Any]:
        return {
            "published": self.published.count,
            "published_by_symbol": {s: self.published.count_of(s) for s in self.published.symbols},
            "last_id_by_symbol": {s: self.published.last_id(s) for s in self.published.symbols},
            "tape_trades": len(self.tape.trades),
            "finished": self.finished.is_set(),
            "cycles": self.cycles,
            "clock": {
                "started": self.clock.started,
                "paused": self.clock.paused,
                "speed": self.options.speed,
            },
            "connections": len(self.connections),
            "connections_total": self.connections_total,
            "connection_details": [c.describe() for c in self.connections.values()],
            "malformed_planned": self.options.malformed,
            "malformed_sent": self.malformed_sent,
            "injected": self.injected,
            "rest_requests": self.rest.requests,
            "rest_failed": self.rest.failed_requests,
            "refused": self.refused,
            "geo_blocked": self.geo_blocked,
            "not_trading": sorted(s for s, st in self.market.status.items() if st != "TRADING"),
        }

    # -- WebSocket ---------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if self.geo_blocked:
            self.refused += 1
            raise web.HTTPUnavailableForLegalReasons(link=None, text=GEO_BLOCK_MSG)
        if time.monotonic() < self._refuse_until:
            self.refused += 1
            raise web.HTTPServiceUnavailable(text="connections refused (emulated outage)")
        combined = request.path == "/stream"
        raw_streams = (
            request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        )
        streams = streams_from_path(raw_streams)
        if len(streams) > self.options.max_streams:
            raise web.HTTPBadRequest(text=f"too many streams (max {self.options.max_streams})")
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=65536)
        await ws.prepare(request)
        self._next_cid += 1
        subs = Subscriptions(combined, dict.fromkeys(streams))
        micro = request.query.get("timeUnit", "").upper() in ("MICROSECOND", "MICROSECONDS")
        conn = Connection(
            self._next_cid, ws, request, subs, self.options, self._on_subscribe, micro
        )
        self.connections[conn.cid] = conn
        self.connections_total += 1
        try:
            await conn.serve()
        finally:
            self.connections.pop(conn.cid, None)
        return ws

    def _on_subscribe(self, conn: Connection) -> None:
        self.start_clock()

    # -- publishing --------------------------------------------------------------------
    async def _publish_all(self) -> None:
        await self._started.wait()
        trades = self.tape.trades
        while True:
            await self._publish_pass(trades, self.cycles)
            await self._flush()  # a short looped tape must still yield between passes
            if not self.options.loop or not trades:
                break
            self.cycles += 1
        await self._flush()
        self.finished.set()
        self._progress.set()
        self.log(f"replay finished: {self.published.count} trades")

    async def _publish_pass(self, trades: Any, cycle: int) -> None:
        shift_ms = cycle * self._periods.time
        since_yield = 0
        plan = self._malformed_plan if cycle == 0 else {}
        trading = self.market.trading
        for position, trade in enumerate(trades):
            if not trading(trade.symbol):  # market rule 2: unlisted or delisted
                continue
            data_ms = trade.time_ms + shift_ms
            self._pending_ms = data_ms
            if self.clock.seconds_until(data_ms) > 0:
                await self._wait_for(data_ms)
                since_yield = 0
            served = self._shifted(trade, cycle, data_ms)
            event = _event(served)
            if position in plan:
                for _ in range(plan[position]):
                    self._send_malformed(make_malformed(event, self._malformed_rng), served.symbol)
            self._publish(served, event)
            since_yield += 1
            if since_yield >= self.options.batch:
                await self._flush()
                since_yield = 0

    async def _wait_for(self, data_ms: int) -> None:
        while (delay := self.clock.seconds_until(data_ms)) > 0:
            await self._flush()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, 1.0)):
                    await self._wake.wait()

    def _shifted(self, trade: Trade, cycle: int, data_ms: int) -> Trade:
        time_ms = self.clock.serve_time(data_ms) if self.options.rebase_time else data_ms
        if cycle == 0 and time_ms == trade.time_ms:
            return trade
        ids, tids = (
            self._periods.ids.get(trade.symbol, 0),
            self._periods.trade_ids.get(trade.symbol, 0),
        )
        return Trade(
            symbol=trade.symbol,
            agg_id=trade.agg_id + cycle * ids,
            price=trade.price,
            quantity=trade.quantity,
            first_id=trade.first_id + cycle * tids,
            last_id=trade.last_id + cycle * tids,
            time_ms=time_ms,
            buyer_is_maker=trade.buyer_is_maker,
        )

    def _publish(self, trade: Trade, event: dict[str, Any]) -> None:
        if self._drop_at is not None and self.published.count >= self._drop_at[0]:
            _, refuse, only = self._drop_at
            self._drop_at = None
            self.log(f"dropping connections after {self.published.count} trades")
            self.drop_connections(only)
            if refuse > 0:
                self.refuse_connections(refuse)
        a, p, q, f, l, t = (event[k] for k in ("a", "p", "q", "f", "l", "T"))  # noqa: E741
        p, q, m = p.encode(), q.encode(), b"true" if event["m"] else b"false"
        raw = _EVENT_FORMAT % (event["E"], event["s"].encode(), a, p, q, f, l, t, m)
        rest = _REST_FORMAT % (a, p, q, f, l, t, m)
        self.published.append(trade.symbol, trade.agg_id, trade.time_ms, rest)
        self.rest.klines.add(trade, event["p"], event["q"])
        if self._record is not None:
            self._record.write(raw + b"\n")
        stream = stream_of(trade.symbol)
        wrapped: bytes | None = None
        for conn in self.connections.values():
            if stream not in conn.subs.streams:
                continue
            if conn.micro:
                conn.push(_micro(event, stream, conn.subs.combined))
            elif conn.subs.combined:
                if wrapped is None:
                    wrapped = b'{"stream":"' + stream.encode() + b'","data":' + raw + b"}"
                conn.push(wrapped)
            else:
                conn.push(raw)

    def _send_malformed(self, bad: Malformed, symbol: str) -> None:
        stream = stream_of(symbol)
        for conn in self.connections.values():
            if stream not in conn.subs.streams:
                continue
            if bad.raw is not None:
                conn.push(bad.raw)
            elif conn.subs.combined:
                conn.push(msgspec.json.encode({"stream": stream, "data": bad.structured}))
            else:
                conn.push(msgspec.json.encode(bad.structured))
            self.malformed_sent += 1

    async def _flush(self) -> None:
        """Let the connections write, wait for lagging ones (rule 3), flush the record."""
        if self._record is not None:
            self._record.flush()
        self._progress.set()
        await asyncio.sleep(0)
        for conn in list(self.connections.values()):
            if conn.drained.is_set() or conn.close_reason is not None:
                continue
            try:
                async with asyncio.timeout(self.options.slow_client_seconds):
                    await conn.drained.wait()
            except TimeoutError:
                self.log(f"connection {conn.cid}: slow consumer, closing")
                conn.request_close(*CLOSE_SLOW)


class _Periods:
    """How far ids and times move on each pass of a looped tape."""

    def __init__(self, time_ms: int, ids: dict[str, int], trade_ids: dict[str, int]) -> None:
        self.time, self.ids, self.trade_ids = time_ms, ids, trade_ids


def _loop_periods(tape: Tape) -> _Periods:
    if not tape.trades:
        return _Periods(0, {}, {})
    ids: dict[str, tuple[int, int]] = {}
    tids: dict[str, tuple[int, int]] = {}
    for t in tape.trades:
        lo, hi = ids.get(t.symbol, (t.agg_id, t.agg_id))
        ids[t.symbol] = (min(lo, t.agg_id), max(hi, t.agg_id))
        lo, hi = tids.get(t.symbol, (t.first_id, t.last_id))
        tids[t.symbol] = (min(lo, t.first_id), max(hi, t.last_id))
    return _Periods(
        tape.last_time_ms - tape.first_time_ms + LOOP_GAP_MS,
        {s: hi - lo + 1 for s, (lo, hi) in ids.items()},
        {s: hi - lo + 1 for s, (lo, hi) in tids.items()},
    )


def _event(trade: Trade) -> dict[str, Any]:
    return {
        "e": "aggTrade",
        "E": trade.time_ms,
        "s": trade.symbol,
        "a": trade.agg_id,
        "p": format(trade.price, "f"),
        "q": format(trade.quantity, "f"),
        "f": trade.first_id,
        "l": trade.last_id,
        "T": trade.time_ms,
        "m": trade.buyer_is_maker,
        "M": True,
    }


def _micro(event: dict[str, Any], stream: str, combined: bool) -> bytes:
    data = dict(event, E=event["E"] * 1000, T=event["T"] * 1000)
    return msgspec.json.encode({"stream": stream, "data": data} if combined else data)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
