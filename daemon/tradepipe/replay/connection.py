"""One client WebSocket connection: its subscriptions, its send queue, and Binance's
connection rules (server pings, pong timeout, 24-hour lifetime, incoming message limit).

Three activities per connection: the handler task reads client frames (control requests,
pings, pongs); a writer task drains the send queue in order; a keeper task sends pings and
enforces the time limits. Any of them may ask to close; the close then runs in its own task
so that no activity cancels it halfway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from tradepipe.replay.options import ReplayOptions
from tradepipe.replay.protocol import Subscriptions, handle_request

# Close codes and reasons the emulator uses (Binance documents the events, not the codes).
CLOSE_EXPIRED = (int(WSCloseCode.GOING_AWAY), "connection lifetime expired (24h)")
CLOSE_PONG_TIMEOUT = (int(WSCloseCode.POLICY_VIOLATION), "pong timeout")
CLOSE_TOO_MANY = (int(WSCloseCode.POLICY_VIOLATION), "too many incoming messages")
CLOSE_SLOW = (int(WSCloseCode.TRY_AGAIN_LATER), "slow consumer")
CLOSE_SHUTDOWN = (int(WSCloseCode.GOING_AWAY), "server shutting down")
MAX_OUTSTANDING_PINGS = 16


class Connection:
    def __init__(
        self,
        cid: int,
        ws: web.WebSocketResponse,
        request: web.Request,
        subs: Subscriptions,
        options: ReplayOptions,
        on_subscribe: Callable[[Connection], None],
        micro: bool = False,
    ) -> None:
        self.cid, self.ws, self.subs, self.micro = cid, ws, subs, micro
        self.peer = str(request.remote)
        self.path = request.path_qs
        self._transport = request.transport
        self._options = options
        self._on_subscribe = on_subscribe
        self.queue: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.connected_at = time.monotonic()
        self.sent = 0
        self.received = 0
        self.close_reason: str | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._pings: deque[bytes] = deque(maxlen=MAX_OUTSTANDING_PINGS)
        self._unanswered_since: float | None = None
        self._incoming: deque[float] = deque()

    # -- sending -----------------------------------------------------------------------
    def push(self, payload: bytes) -> None:
        """Queue one text message; never blocks (the publisher watches ``drained``)."""
        if self.close_reason is not None:
            return
        self.queue.append(payload)
        self._wakeup.set()
        if len(self.queue) > self._options.queue_high_water:
            self.drained.clear()

    async def _write(self) -> None:
        low_water = self._options.queue_high_water // 2
        queue, ws = self.queue, self.ws
        while True:
            if not queue:
                self._wakeup.clear()
                self.drained.set()
                await self._wakeup.wait()
                continue
            await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
            self.sent += 1
            if len(queue) <= low_water and not self.drained.is_set():
                self.drained.set()

    # -- closing -----------------------------------------------------------------------
    def request_close(self, code: int, reason: str) -> None:
        """Close with a close frame (``code``, ``reason``), once, in a task of its own."""
        if self._close_task is None:
            self.close_reason = reason
            self.queue.clear()  # what a closing connection had not sent is lost, as on Binance
            self.drained.set()  # ... and the publisher never waits for it
            self._close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure, as seen by the
        client)."""
        self.close_reason = self.close_reason or "dropped"
        if self._transport is not None:
            self._transport.abort()

    # -- the connection's life ---------------------------------------------------------
    async def serve(self) -> None:
        """Run until the connection ends: read here, write and keep alive alongside."""
        if self.subs.streams:
            self._on_subscribe(self)
        writer = asyncio.create_task(self._write())
        keeper = asyncio.create_task(self._keep())
        try:
            await self._read()
        finally:
            for task in (writer, keeper):
                task.cancel()
            await asyncio.gather(writer, keeper, return_exceptions=True)
            if self._close_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._close_task, timeout=5)
            self.close_reason = self.close_reason or "closed by client"
            self.queue.clear()
            self.drained.set()

    async def _read(self) -> None:
        ws = self.ws
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            self.received += 1
            if self._over_limit():
                self.request_close(*CLOSE_TOO_MANY)
                continue
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                self._pong(msg.data)
            elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                self._control(msg.data)

    def _control(self, data: Any) -> None:
        outcome = handle_request(data, self.subs, self._options.max_streams)
        self.push(outcome.reply)
        if outcome.added:
            self._on_subscribe(self)

    def _over_limit(self) -> bool:
        limit = self._options.max_incoming_per_second
        if not limit:
            return False
        now = time.monotonic()
        incoming = self._incoming
        incoming.append(now)
        while incoming and incoming[0] <= now - 1.0:
            incoming.popleft()
        return len(incoming) > limit

    def _pong(self, payload: bytes) -> None:
        # Only a pong echoing one of our pings counts (unsolicited pongs do not, as on Binance).
        if payload in self._pings:
            self._pings.clear()
            self._unanswered_since = None

    async def _keep(self) -> None:
        opts = self._options
        expires = self.connected_at + opts.max_connection_seconds
        next_ping = self.connected_at + opts.ping_interval
        while True:
            now = time.monotonic()
            if now >= expires:
                self.request_close(*CLOSE_EXPIRED)
                return
            since = self._unanswered_since
            if since is not None and now - since >= opts.pong_timeout:
                self.request_close(*CLOSE_PONG_TIMEOUT)
                return
            if now >= next_ping:
                payload = str(time.time_ns() // 1_000_000).encode()
                self._pings.append(payload)
                if self._unanswered_since is None:
                    self._unanswered_since = now
                await self.ws.ping(payload)
                next_ping = now + opts.ping_interval
            deadline = min(expires, next_ping)
            if self._unanswered_since is not None:
                deadline = min(deadline, self._unanswered_since + opts.pong_timeout)
            await asyncio.sleep(max(0.001, deadline - time.monotonic()))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.cid,
            "peer": self.peer,
            "path": self.path,
            "streams": list(self.subs.streams),
            "combined": self.subs.combined,
            "sent": self.sent,
            "queued": len(self.queue),
            "age_seconds": round(time.monotonic() - self.connected_at, 3),
        }
