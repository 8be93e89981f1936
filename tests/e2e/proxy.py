"""A loopback TCP proxy the test controls: the network path to a server, cut and restored
without touching the server (the in-memory S3 server keeps its data).

While it is down it refuses nothing at the TCP level but aborts every connection it accepts
(a reset, as a broken path or a dead load balancer gives), and going down aborts every
connection it is piping: pooled keep-alive connections of the client die too.
"""

from __future__ import annotations

import asyncio
import contextlib


class CutProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.is_down = False
        self.refused = 0  # connections aborted while down
        self.server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CutProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.down()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def down(self) -> None:
        self.is_down = True
        for writer in list(self._live):
            writer.transport.abort()
        self._live.clear()

    def up(self) -> None:
        self.is_down = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._live.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._live.discard(writer)
            self._live.discard(up_writer)
