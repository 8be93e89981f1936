"""The store's reads (:class:`tradepipe.store.MinuteReads`) off the event loop.

The store is synchronous: its reads run in one worker thread of their own, one at a time (a
connection serves one thread), so a slow database never blocks the server's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

from tradepipe.export import write_rows
from tradepipe.store import Connection, MinuteReads, SqliteUrl, parse_db_url
from tradepipe.store.ranges import RowRange, iter_pages
from tradepipe.store.reads import Value
from tradepipe.store.series import SeriesValue
from tradepipe.store.url import DbUrlError

T = TypeVar("T")


class MinuteReader:
    """What the dashboard reads ``trade_minutes`` with (see :mod:`tradepipe.store.reads`)."""

    def __init__(self, reads: MinuteReads) -> None:
        self.reads = reads
        self.where = reads.where  # for messages: a path, or a MySQL URL without its password
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tradepipe-reads")
        self._closed = False

    def missing(self) -> str | None:
        """Why no read can succeed yet, if that is already known (a SQLite file absent)."""
        return self.reads.missing()

    async def _run(self, read: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, read, *args)

    async def symbols(self) -> list[str]:
        return await self._run(self.reads.symbols)

    async def newest(self, symbol: str) -> str | None:
        return await self._run(self.reads.newest, symbol)

    async def minutes(self, symbol: str, start: str, end: str) -> list[dict[str, Value]]:
        return await self._run(self.reads.minutes, symbol, start, end)

    async def checks(self, symbol: str, start: str, end: str) -> list[tuple[str, str]]:
        return await self._run(self.reads.checks, symbol, start, end)

    async def series(self, symbol: str, start: str, end: str) -> list[dict[str, SeriesValue]]:
        return await self._run(self.reads.series, symbol, start, end)

    async def export(self, rows: RowRange, fmt: str, out: BinaryIO) -> int:
        """Write a range's rows to ``out`` (:mod:`tradepipe.export`) in the read thread."""

        def work(conn: Connection) -> int:
            return write_rows(iter_pages(conn, rows), out, fmt)

        return await self._run(self.reads.using, work)

    async def close(self) -> None:
        """Close the connection in the thread that used it, then end the thread."""
        if self._closed:
            return
        self._closed = True
        await self._run(self.reads.close)
        self._thread.shutdown(wait=False)


def open_reader(url: str) -> MinuteReader:
    """A reader for ``sqlite:///PATH`` or ``mysql://...``; :class:`DbUrlError` (a
    ``ValueError``) for anything else."""
    parsed = parse_db_url(url)
    if isinstance(parsed, SqliteUrl) and parsed.path == ":memory:":
        raise DbUrlError("the dashboard cannot read an in-memory SQLite database")
    return MinuteReader(MinuteReads(parsed))
