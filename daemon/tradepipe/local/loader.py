"""Local mode's Lambda: each object the sink has written -> its trades upserted into the DB.

In production S3 announces a new object to the Lambda, which reads it and upserts its trades
(``lambda/handler.py``). Here the sink's object writer is wrapped (:class:`NotifyingWriter`) so
that every object, once written, is handed to :class:`ObjectLoader` with its bytes; the loader
parses them with the core and upserts through :class:`tradepipe.store.Store`, the very code
path of the Lambda. Exactness and idempotency are the store's (``tradepipe/store/upsert.py``):
an object loaded twice, or objects that overlap or split a minute, change nothing.

Rules:
1. Objects queue in the order they were written; whatever has queued while the previous
   upsert ran is loaded together, in one transaction (fewer, larger transactions when busy).
2. The store is synchronous: upserts run in one dedicated worker thread (a SQLite connection
   belongs to the thread that opened it), never on the event loop.
3. A failing database never loses an object and never stops the process: the batch is retried
   until it succeeds (:class:`tradepipe.retry.RetryForever`), each failure counted in
   ``stats.failures`` and logged at error level. At shutdown, objects still unloaded after the time
   limit are logged by key, so ``tradepipe load`` can finish the job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pymysql
import structlog

from tradepipe.core import Rejected, SourceError, decompress
from tradepipe.core.batch import TradeBatch, read_batch
from tradepipe.retry import RetryForever
from tradepipe.sink.objects import ObjectWriter
from tradepipe.store import Store

log = structlog.get_logger("tradepipe.local.loader")

# What the store raises when the database fails (after its own bounded retries): the server
# down or unreachable, locks, a full disk. Anything else (a programming error) is a bug: it
# propagates and stops the pipeline.
DB_ERRORS = (
    pymysql.err.OperationalError,
    pymysql.err.InterfaceError,
    sqlite3.OperationalError,
    OSError,
)


@dataclass(slots=True)
class LoaderStats:
    objects: int = 0
    trades: int = 0
    added: int = 0
    rows: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    last_loaded: float | None = None  # wall-clock time of the last successful upsert
    loaded_keys: list[str] = field(default_factory=list)  # the most recent keys, for tests


def trades_of(key: str, body: bytes) -> tuple[TradeBatch, list[Rejected]]:
    """An object's trades (read as the Lambda reads them) and its rejected lines (the sink
    writes only valid ones)."""
    trades, rejected = read_batch(decompress(body, key), key, None, int(time.time() * 1000))
    for item in rejected:
        log.warning("object_line_rejected", key=key, line=item.lineno, error=str(item.error))
    return trades, rejected


class ObjectLoader:
    def __init__(self, store: Store, retry: RetryForever | None = None) -> None:
        self.store = store
        self.stats = LoaderStats()
        self.retry = retry or RetryForever()
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._closed = asyncio.Event()
        self._inflight: list[str] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tradepipe-store")

    def submit(self, key: str, body: bytes) -> None:
        self._queue.put_nowait((key, body))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """No more objects will come: :meth:`run` returns once the queue is loaded."""
        self._closed.set()

    async def close_store(self) -> None:
        """Close the store's connection in the thread that opened it, then end the thread."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self.store.close)
        self._thread.shutdown(wait=False)

    async def run(self) -> None:
        while True:
            if self._queue.empty():
                if self._closed.is_set():
                    return
                closed = asyncio.ensure_future(self._closed.wait())
                got = asyncio.ensure_future(self._queue.get())
                await asyncio.wait({closed, got}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if not got.done():
                    got.cancel()
                    continue
                batch = [got.result()]
            else:
                batch = [self._queue.get_nowait()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._load(batch)

    async def _load(self, batch: list[tuple[str, bytes]]) -> None:
        trades = TradeBatch()
        rejected: list[Rejected] = []
        for key, body in batch:
            try:
                got, bad = trades_of(key, body)
            except SourceError as exc:  # cannot happen for our own objects; never fatal
                log.error("object_unreadable", key=key, error=str(exc))
                continue
            trades.extend(got)
            rejected.extend(bad)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._inflight = [k for k, _ in batch]
        async for attempt in self.retry.attempts(DB_ERRORS):  # rule 3: retried, never fatal
            with attempt:
                try:
                    result = await loop.run_in_executor(self._thread, self.store.upsert, trades)
                except DB_ERRORS as exc:
                    self.stats.failures += 1
                    log.error("upsert_failed", objects=len(batch), error=repr(exc),
                              attempt=attempt.num,
                              retry_in=round(attempt.next_wait, 2))  # fmt: skip
                    raise
        self._inflight = []
        s = self.stats
        s.objects += len(batch)
        s.trades += result.trades
        s.added += result.added
        s.rows += result.rows
        s.rejected += len(rejected)
        for r in rejected:
            s.rejected_by_reason[r.error.reason] = s.rejected_by_reason.get(r.error.reason, 0) + 1
        s.last_loaded = time.time()
        s.loaded_keys = (s.loaded_keys + [k for k, _ in batch])[-1000:]
        log.info("objects_loaded", objects=len(batch), trades=result.trades, added=result.added,
                 rows=result.rows, ms=round((time.monotonic() - started) * 1000, 1))  # fmt: skip

    def unloaded_keys(self) -> list[str]:
        """Objects not loaded (for the shutdown log when the database stayed down)."""
        keys = list(self._inflight)
        while not self._queue.empty():
            keys.append(self._queue.get_nowait()[0])
        return keys


class NotifyingWriter:
    """An :class:`ObjectWriter` that hands each object, once written, to the loader (the
    local stand-in for S3's ObjectCreated event)."""

    def __init__(self, inner: ObjectWriter, loader: ObjectLoader) -> None:
        self.inner, self.loader = inner, loader

    async def put(self, key: str, body: bytes) -> None:
        await self.inner.put(key, body)
        self.loader.submit(key, body)
