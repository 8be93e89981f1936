"""The producer's resume state on disk: the last *acknowledged* aggregate id per symbol.

Rules:

1. Only ids the broker acknowledged are recorded (the publisher's ack path; a record sent to
   the quarantine counts as done too). So every id at or below a stored one is in Kafka, in
   the quarantine, or counted as unfilled: resuming from it can duplicate, never lose.
2. :meth:`StateFile.note` is cheap and runs on every ack; the file is written at most once a
   second by :meth:`StateFile.run` and once more at shutdown (:meth:`StateFile.flush`), never
   per ack. A SIGKILL therefore loses at most the last second of progress: the restart fetches
   those trades again (duplicates downstream de-duplicates), it does not skip them.
3. Writes are atomic: a temporary file in the same directory, ``fsync``, ``rename`` over the
   old one, ``fsync`` of the directory. A kill at any point leaves the old file or the new one.
4. :func:`load_state` reads it at start. A file that is not ours (unparseable, another format
   or version, another topic, an id that is no aggregate id) raises :class:`StateError` whose
   message names the file; the caller logs it, moves the file aside (:func:`set_aside`) and
   starts without it. It never stops the process: under systemd that would be a restart loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import structlog

from tradepipe.producer.records import Record

log = structlog.get_logger(__name__)

FORMAT = "tradepipe-producer-state"
VERSION = 1
MAX_AGG_ID = 2**63 - 1  # Binance ids are int64 (and Kafka readers parse them as such)


class StateError(Exception):
    """The state file exists but cannot be used; the message names it."""


def valid_agg_id(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_AGG_ID


def load_state(path: Path, topic: str) -> dict[str, int]:
    """The last acknowledged id per symbol from ``path``; ``{}`` if there is no file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StateError(f"state file {path}: cannot read it: {exc.strerror}") from None
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise StateError(f"state file {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateError(f"state file {path}: not a {FORMAT} file")
    if doc.get("version") != VERSION:
        raise StateError(f"state file {path}: version {doc.get('version')!r}, expected {VERSION}")
    if doc.get("topic") != topic:
        raise StateError(
            f"state file {path}: written for topic {doc.get('topic')!r}, this is {topic!r}"
        )
    ids = doc.get("last_acked")
    if not isinstance(ids, dict):
        raise StateError(f"state file {path}: 'last_acked' is not an object")
    out: dict[str, int] = {}
    for symbol, agg_id in ids.items():
        if not (isinstance(symbol, str) and symbol.isalnum() and symbol.isupper()):
            raise StateError(f"state file {path}: {symbol!r} is not a symbol")
        if not valid_agg_id(agg_id):
            raise StateError(f"state file {path}: {symbol}: {agg_id!r} is not an aggregate id")
        out[symbol] = agg_id
    return out


def set_aside(path: Path) -> Path | None:
    """Move an unusable state file out of the way (kept for the operator); its new path."""
    target = path.with_name(f"{path.name}.bad-{int(time.time())}")
    try:
        path.rename(target)
    except OSError:
        return None
    return target


def write_atomically(path: Path, data: bytes) -> None:
    """Rule 3: temporary file, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateFile:
    """The last acknowledged id per symbol, kept in memory and written as rule 2 says."""

    def __init__(
        self,
        path: str | Path,
        topic: str,
        symbols: Iterable[str],
        initial: Mapping[str, int] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.path, self.topic, self.interval = Path(path), topic, interval
        wanted = {s.upper() for s in symbols}
        # symbols no longer subscribed are dropped: their ids would be stale by the next time
        self.last_acked = {s: i for s, i in (initial or {}).items() if s in wanted}
        self.writes = 0
        self._dirty = False
        self._failing = False
        self._lock = threading.Lock()
        self._generation = self._written = 0
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # a kill mid-write
            with contextlib.suppress(OSError):
                stale.unlink()

    def note(self, records: Iterable[Record]) -> None:
        """Rule 1: called with every acknowledged (or quarantined) chunk."""
        last = self.last_acked
        for rec in records:
            if rec.agg_id > last.get(rec.symbol, -1):
                last[rec.symbol] = rec.agg_id
                self._dirty = True

    def document(self) -> bytes:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "topic": self.topic,
            "written_at_ms": int(time.time() * 1000),
            "last_acked": dict(sorted(self.last_acked.items())),
        }
        return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"

    def flush(self) -> bool:
        """Write now if anything changed; False (logged once per failure spell) on an error."""
        if not self._dirty:
            return True
        self._dirty = False
        return self._write(*self._snapshot())

    async def run(self) -> None:
        """Write every ``interval`` seconds while something changed (until cancelled). The
        document is built on the loop (``note`` runs there); only the disk I/O is a thread."""
        while True:
            await asyncio.sleep(self.interval)
            if self._dirty:
                self._dirty = False
                await asyncio.to_thread(self._write, *self._snapshot())

    def _snapshot(self) -> tuple[int, bytes]:
        self._generation += 1
        return self._generation, self.document()

    def _write(self, generation: int, data: bytes) -> bool:
        # a write still running in its thread when shutdown flushes must not land after it
        try:
            with self._lock:
                if generation <= self._written:
                    return True
                write_atomically(self.path, data)
                self._written = generation
        except OSError as exc:
            self._dirty = True
            if not self._failing:
                log.error("state_write_failed", path=str(self.path), error=str(exc))
            self._failing = True
            return False
        if self._failing:
            log.info("state_write_recovered", path=str(self.path))
        self._failing = False
        self.writes += 1
        return True
