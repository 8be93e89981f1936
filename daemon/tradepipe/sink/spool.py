"""The sink's durable spool: Kafka records on local disk, between the consumer and the S3 writer.

The consumer appends each fetch here (one transaction, made durable before it returns) and only
then commits the Kafka offset; the cutter reads the records back in offset order, feeds the
batcher, puts the objects and then saves the batcher's checkpoint here, in the same transaction
that trims the records below it. So reading from Kafka never waits on S3, an S3 outage costs
disk (up to ``sink.spool_max_bytes``), and a restart rebuilds the same objects from the spool.

Why SQLite (stdlib ``sqlite3``) in WAL mode rather than a file format of our own or another
embedded log: it is in the standard library (no new dependency), it gives atomic multi-row
transactions (append a fetch and move the partition's ``next_offset`` together; save a
checkpoint and trim the records below it together), crash consistency that is tested far beyond
what a hand-written segment format would be (a torn write is rolled back from the WAL on the
next open), a primary key that makes a re-delivered record (a crash between the spool's commit
and Kafka's) a no-op, and ordered range reads by ``(topic, partition, offset)``.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``: every commit fsyncs the WAL, so a
record is on disk when :meth:`SpoolFile.append` returns, and the Kafka offset committed after it
never points past a record that a power cut could take away (``NORMAL`` survives a killed
process but not a power cut: the last commits can be rolled back, and Kafka would not send them
again). Appends are batched (one transaction per fetch, up to thousands of records), so the
fsync cost is per fetch, not per record: ``bench/spool_bench.py`` measures both settings
(docs/operations.md, "The sink's spool").

Schema (``user_version`` 1):

- ``records(topic, partition, offset, symbol, time_ms, line, spooled_ms)``, keyed by
  ``(topic, partition, offset)``, ``WITHOUT ROWID`` (the key is the order the cutter reads):
  the decoded record as the batcher takes it (``symbol`` NULL for a malformed record, which the
  batcher must still see: it changes its decisions), and when it was spooled (the oldest
  record's age is a metric);
- ``partitions(topic, partition, next_offset, checkpoint_offset, checkpoint)``: per partition
  the offset after the last record appended (records below it are refused as re-deliveries)
  and the batcher's checkpoint after the last put (its offset, and its text as Kafka's offset
  metadata would hold it): records below its offset are trimmed, the cutter resumes from it.

All calls block (disk I/O, fsync): :class:`Spool` runs them in one dedicated thread (a SQLite
connection belongs to its thread), never on the event loop.

One spool, one sink: the spool holds partitions that another sink of the group may own now (a
rebalance leaves what was spooled here to be put from here), and at start every partition in it
is resumed. Two processes on one spool would each cut, put and trim the other's records, so
opening takes an exclusive lock (``flock`` on ``sink-spool.lock`` beside the database, holding
the owner's pid) for as long as the spool is open; a second sink on the same ``sink.spool_dir``
stops at start-up with :class:`SpoolError` naming the directory and the holder's pid.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from tradepipe.sink.checkpoint import Checkpoint, CheckpointError

SPOOL_FILE = "sink-spool.sqlite3"
LOCK_FILE = "sink-spool.lock"
SCHEMA_VERSION = 1
Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    symbol TEXT,
    time_ms INTEGER NOT NULL,
    line BLOB NOT NULL,
    spooled_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    checkpoint_offset INTEGER,
    checkpoint TEXT,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""

T = TypeVar("T")


class SpoolError(RuntimeError):
    """The spool file cannot be used (not ours, a newer schema, or corrupt)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One spooled record, decoded as the batcher takes it (``symbol=None``: malformed)."""

    offset: int
    symbol: str | None
    time_ms: int
    line: bytes


@dataclass(frozen=True, slots=True)
class PartitionState:
    topic: str
    partition: int
    next_offset: int  # the offset after the last record appended
    checkpoint: Checkpoint | None  # the batcher's state after the last put (None: none yet)


@dataclass(frozen=True, slots=True)
class Usage:
    records: int
    bytes: int  # pages in use in the database file (free pages not counted)
    oldest_ms: int | None  # when the oldest record still spooled was spooled (epoch ms)


class SpoolFile:
    """The spool's SQLite database; every method is one transaction (module docstring)."""

    def __init__(self, path: str | Path, synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.path.parent / LOCK_FILE)
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except BaseException:
            os.close(self._lock)
            raise
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SpoolError(
                    f"{self.path}: spool schema {version} is newer than this tradepipe's "
                    f"({SCHEMA_VERSION})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._db.close()
            os.close(self._lock)
            raise SpoolError(f"{self.path}: not a usable spool: {exc}") from exc
        except BaseException:
            self._db.close()
            os.close(self._lock)
            raise

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)  # releases the flock

    # ------------------------------------------------------------------ reads

    def partitions(self) -> list[PartitionState]:
        rows = self._db.execute(
            "SELECT topic, partition, next_offset, checkpoint_offset, checkpoint FROM partitions "
            "ORDER BY topic, partition"
        ).fetchall()
        return [PartitionState(t, p, n, self._checkpoint(t, p, o, c)) for t, p, n, o, c in rows]

    def state(self, topic: str, partition: int) -> PartitionState | None:
        row = self._db.execute(
            "SELECT next_offset, checkpoint_offset, checkpoint FROM partitions "
            "WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
        if row is None:
            return None
        checkpoint = self._checkpoint(topic, partition, row[1], row[2])
        return PartitionState(topic, partition, row[0], checkpoint)

    def read(self, topic: str, partition: int, from_offset: int, limit: int) -> list[Entry]:
        """Up to ``limit`` records of the partition from ``from_offset`` on, in offset order."""
        rows = self._db.execute(
            "SELECT offset, symbol, time_ms, line FROM records "
            "WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
            (topic, partition, from_offset, limit),
        ).fetchall()
        return [Entry(o, s, t, bytes(line)) for o, s, t, line in rows]

    def count(self) -> int:
        """Records spooled (a full scan: at open only; :class:`Spool` keeps the count)."""
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def measure(self) -> tuple[int, int | None]:
        """(:meth:`used_bytes`, when the oldest record still spooled was spooled), cheaply:
        the first record of each partition, by key."""
        oldest: int | None = None
        for topic, partition in self._db.execute("SELECT topic, partition FROM partitions"):
            row = self._db.execute(
                "SELECT spooled_ms FROM records WHERE topic = ? AND partition = ? "
                "ORDER BY offset LIMIT 1",
                (topic, partition),
            ).fetchone()
            if row is not None:
                oldest = row[0] if oldest is None else min(oldest, row[0])
        return self.used_bytes(), oldest

    def summary(self) -> list[dict[str, object]]:
        """Per partition holding records: how many, their offsets, the checkpoint's offset."""
        rows = self._db.execute(
            "SELECT r.topic, r.partition, count(*), min(r.offset), max(r.offset), "
            "p.checkpoint_offset FROM records r JOIN partitions p "
            "ON p.topic = r.topic AND p.partition = r.partition "
            "GROUP BY r.topic, r.partition ORDER BY r.topic, r.partition"
        ).fetchall()
        return [
            {
                "topic": t,
                "partition": p,
                "records": n,
                "offsets": f"{first}-{last}",
                "resume_offset": c if c is not None else first,
            }
            for t, p, n, first, last, c in rows
        ]

    def used_bytes(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    # ------------------------------------------------------------------ writes

    def append(self, topic: str, partition: int, entries: Sequence[Entry]) -> int:
        """Store ``entries`` (ascending offsets) durably; records below the partition's
        ``next_offset`` are re-deliveries and ignored. Returns how many were stored."""
        now = int(time.time() * 1000)
        with self._transaction():
            row = self._db.execute(
                "SELECT next_offset FROM partitions WHERE topic = ? AND partition = ?",
                (topic, partition),
            ).fetchone()
            floor = row[0] if row is not None else 0
            new = [e for e in entries if e.offset >= floor]
            if not new:
                return 0
            self._db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((topic, partition, e.offset, e.symbol, e.time_ms, e.line, now) for e in new),
            )
            self._db.execute(
                "INSERT INTO partitions (topic, partition, next_offset) VALUES (?, ?, ?) "
                "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                (topic, partition, new[-1].offset + 1),
            )
            return len(new)

    def adopt(self, topic: str, partition: int, checkpoint: Checkpoint) -> bool:
        """Start a partition the spool has never seen from ``checkpoint`` (the one an earlier
        sink committed to Kafka with its offset); ``False`` if the spool knows it already."""
        with self._transaction():
            cur = self._db.execute(
                "INSERT INTO partitions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (topic, partition, checkpoint.offset, checkpoint.offset, checkpoint.to_metadata()),
            )
            return cur.rowcount == 1

    def forget(self, topic: str, partition: int) -> int:
        """Drop a partition (its records and state): its offsets started over. Returns how
        many records it still had (the caller writes them first: 0)."""
        with self._transaction():
            cur = self._db.execute(
                "DELETE FROM records WHERE topic = ? AND partition = ?", (topic, partition)
            )
            self._db.execute(
                "DELETE FROM partitions WHERE topic = ? AND partition = ?", (topic, partition)
            )
            return cur.rowcount

    def commit(self, topic: str, partition: int, checkpoint: Checkpoint) -> int:
        """Save the batcher's ``checkpoint`` (its objects are written) and trim the records
        below its offset, together. Returns how many records were trimmed."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO partitions VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET checkpoint_offset = excluded.checkpoint_offset, "
                "checkpoint = excluded.checkpoint",
                (topic, partition, checkpoint.offset, checkpoint.offset, checkpoint.to_metadata()),
            )
            cur = self._db.execute(
                "DELETE FROM records WHERE topic = ? AND partition = ? AND offset < ?",
                (topic, partition, checkpoint.offset),
            )
            return cur.rowcount

    # ------------------------------------------------------------------ internals

    def _checkpoint(
        self, topic: str, partition: int, offset: int | None, text: str | None
    ) -> Checkpoint | None:
        if offset is None or text is None:
            return None
        try:
            return Checkpoint.from_metadata(offset, text)
        except CheckpointError as exc:
            raise SpoolError(f"{self.path}: bad checkpoint of {topic}/{partition}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (durable per ``synchronous``), rolled back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _lock(path: Path) -> int:
    """An exclusive ``flock`` on ``path`` (created), holding this process's pid; the open
    descriptor keeps it until closed (or the process dies: the kernel releases it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SpoolError(
            f"{path.parent}: the spool is in use by another sink (pid {holder}); every sink "
            "needs a sink.spool_dir of its own (TRADEPIPE_SINK_SPOOL_DIR)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Spool:
    """A :class:`SpoolFile` run in one dedicated thread (use :meth:`open`), with the figures
    the metrics show (:attr:`usage`) kept up to date by each call."""

    def __init__(self, file: SpoolFile, thread: ThreadPoolExecutor, records: int) -> None:
        self.file, self._thread, self._records = file, thread, records
        self.usage = Usage(records, 0, None)

    @classmethod
    async def open(cls, directory: str | Path, synchronous: Synchronous = "FULL") -> Spool:
        """Open (or create) ``directory/sink-spool.sqlite3``."""
        path = Path(directory) / SPOOL_FILE
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tradepipe-spool")
        loop = asyncio.get_running_loop()
        try:
            file = await loop.run_in_executor(thread, SpoolFile, path, synchronous)
            records = await loop.run_in_executor(thread, file.count)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        spool = cls(file, thread, records)
        await spool.refresh()
        return spool

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, *args)

    async def close(self) -> None:
        await self._run(self.file.close)
        self._thread.shutdown(wait=True)

    async def partitions(self) -> list[PartitionState]:
        return await self._run(self.file.partitions)

    async def state(self, topic: str, partition: int) -> PartitionState | None:
        return await self._run(self.file.state, topic, partition)

    async def read(self, topic: str, partition: int, from_offset: int, limit: int) -> list[Entry]:
        return await self._run(self.file.read, topic, partition, from_offset, limit)

    async def append(self, topic: str, partition: int, entries: Sequence[Entry]) -> int:
        stored = await self._run(self.file.append, topic, partition, entries)
        self._records += stored
        await self.refresh()
        return stored

    async def adopt(self, topic: str, partition: int, checkpoint: Checkpoint) -> bool:
        return await self._run(self.file.adopt, topic, partition, checkpoint)

    async def commit(self, topic: str, partition: int, checkpoint: Checkpoint) -> int:
        trimmed = await self._run(self.file.commit, topic, partition, checkpoint)
        self._records -= trimmed
        await self.refresh()
        return trimmed

    async def forget(self, topic: str, partition: int) -> int:
        dropped = await self._run(self.file.forget, topic, partition)
        self._records -= dropped
        await self.refresh()
        return dropped

    async def summary(self) -> list[dict[str, object]]:
        return await self._run(self.file.summary)

    async def refresh(self) -> Usage:
        used, oldest = await self._run(self.file.measure)
        self.usage = Usage(self._records, used, oldest)
        return self.usage
