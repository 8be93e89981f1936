"""The sink's pure core: records of one Kafka partition -> per-(group, minute) objects.

No I/O here: the shell feeds records in offset order and carries out the :class:`Flush` values
it gets back (write the objects, then commit the checkpoint). Local mode feeds it from its
in-process broker the same way.

Rules:

1. **Grouping.** An object holds records of ONE partition for one (group, trade minute), in
   offset order, and is named by its first and last offsets
   (``topic+partition+first_offset+last_offset``: Kafka Connect's scheme, and the last offset so
   that one name never holds two different sets of records). The group is the layout's
   (:func:`tradepipe.core.group_of`): the symbol (``per_symbol``) or every symbol
   (``per_minute``). A record joins the open object of its (group, minute), or opens one.
2. **Watermark.** ``W`` is the highest trade time ``T`` seen in the partition. Only records move
   it (never the wall clock), so every decision below is a function of the record sequence.
3. **Due (record time).** After each record, an open object of minute ``m`` is due when
   ``W >= m + 60 s + grace`` -- except the object the record just joined: a burst of late
   records for one minute (e.g. a backfill) stays together until a record of another
   (group, minute) arrives. All due objects are flushed together.
4. **Size cap.** An object reaching ``max_records`` flushes *every* open object of the
   partition (a cut: nothing is held afterwards). So does a checkpoint that would not fit in
   the offset metadata (:data:`~.checkpoint.MAX_METADATA`).
5. **Idle (wall clock).** When the partition has no new records, :meth:`PartitionBatcher.tick`
   flushes objects whose minute ended more than ``grace`` ago by the wall clock. Because that
   decision is not a function of the records, its checkpoint is committed *before* the objects
   are written (``Flush.before``), so a replay applies it at the same position.
6. **Commit.** After a flush's objects are all written, its checkpoint is committed: offset =
   the lowest offset still held (nothing below it is unwritten), metadata = the held set.
7. **Replay.** Restarted from a checkpoint, records in ``[offset, position)`` that belong to a
   held object are held again, all others (already written) are skipped; at ``position`` the
   state equals the one that was committed, and rules 1-5 then take the same decisions on the
   same records. So objects rewritten after a crash have the same keys and the same bytes.
8. **Layout change.** A checkpoint committed under the other layout (``sink.layout`` changed
   between runs) is honoured in its own terms: a replayed record is held when its group *in
   the checkpoint's layout* is held, and joins its group in the new layout; every other one is
   skipped. Nothing is lost; the objects of that window get new-layout keys, so the records
   of a flush written and not committed before the change are in the bucket twice (once per
   layout), which the Lambda's per-trade de-duplication absorbs.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

from tradepipe.core import (
    EVERY_SYMBOL,
    MINUTE_MS,
    Layout,
    group_of,
    minute_of,
    object_key,
    sink_object_name,
)
from tradepipe.sink.checkpoint import MAX_METADATA, Checkpoint, GroupKey


@dataclass(frozen=True, slots=True)
class Batch:
    """One object to write: records of one partition for one (group, minute)."""

    topic: str
    partition: int
    symbol: str  # the group: a symbol, or EVERY_SYMBOL for a per-minute object
    minute_ms: int
    first_offset: int
    last_offset: int
    lines: tuple[bytes, ...]

    @property
    def name(self) -> str:
        return sink_object_name(self.topic, self.partition, self.first_offset, self.last_offset)

    def key(self, prefix: str) -> str:
        return str(object_key(prefix, self.symbol, self.minute_ms, self.name))

    def body(self) -> bytes:
        """gzip NDJSON; ``mtime=0`` and no file name, so the same records give the same bytes."""
        return gzip.compress(b"".join(line + b"\n" for line in self.lines), mtime=0)


@dataclass(frozen=True, slots=True)
class Flush:
    """Write ``batches`` (any order, all must succeed), then commit ``checkpoint``.

    ``before``, when set, must be committed before writing anything (rule 5).
    """

    batches: tuple[Batch, ...]
    checkpoint: Checkpoint
    before: Checkpoint | None = None
    reason: str = "due"


@dataclass(slots=True)
class _Open:
    symbol: str
    minute_ms: int
    first_offset: int
    last_offset: int
    lines: list[bytes] = field(default_factory=list)


class PartitionBatcher:
    """Groups one partition's records into per-(group, minute) objects (module rules)."""

    def __init__(
        self,
        topic: str,
        partition: int,
        grace_ms: int,
        max_records: int,
        resume: Checkpoint | None = None,
        layout: Layout = Layout.PER_SYMBOL,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.topic, self.partition, self.layout = topic, partition, layout
        self.grace_ms, self.max_records = grace_ms, max_records
        self._open: dict[GroupKey, _Open] = {}
        self._watermark = 0
        self._last: GroupKey | None = None
        self._position: int | None = None
        self._resume = resume
        self._resume_held: dict[GroupKey, int] = {}
        self.skipped = 0  # records of the replay window that were already written
        # the layout the checkpoint was committed under (rule 8), told by its groups
        self._resume_layout = layout
        if resume is not None:
            self._position = resume.offset
            self._resume_held = {(s, m): first for s, m, first in resume.held}
            groups = [s for s, _, _ in resume.held] + ([resume.last[0]] if resume.last else [])
            if groups:
                every = EVERY_SYMBOL in groups
                self._resume_layout = Layout.PER_MINUTE if every else Layout.PER_SYMBOL

    # ------------------------------------------------------------------ feeding

    @property
    def replaying(self) -> bool:
        return self._resume is not None

    @property
    def held_records(self) -> int:
        return sum(len(g.lines) for g in self._open.values())

    @property
    def next_offset(self) -> int | None:
        """The offset of the record expected next (``None`` before the first)."""
        return self._position

    def held_offsets(self) -> tuple[int, int] | None:
        """``(first held, next to read)`` while records are held, for the shutdown's report."""
        if not self._open or self._position is None:
            return None
        return min(g.first_offset for g in self._open.values()), self._position

    def add(self, offset: int, symbol: str | None, time_ms: int, line: bytes) -> list[Flush]:
        """The record at ``offset`` (``symbol=None``: malformed, not stored) -> flushes due."""
        flushes: list[Flush] = []
        if self._resume is not None:
            if offset < self._resume.position:
                self._replayed(offset, symbol, time_ms, line)
                if offset + 1 >= self._resume.position:
                    flushes.extend(self._end_replay())
                return flushes
            flushes.extend(self._end_replay())
        self._position = offset + 1
        if symbol is None:
            self._last = None
        else:
            key = (group_of(self.layout, symbol), minute_of(time_ms))
            self._watermark = max(self._watermark, time_ms)
            group = self._join(key, offset, line)
            self._last = key
            if len(group.lines) >= self.max_records:
                flushes.append(self._cut("size_cap"))
                return flushes
        flushes.extend(self._flush_due())
        return flushes

    def tick(self, now_ms: int) -> Flush | None:
        """Wall-clock flush of minutes ended more than ``grace`` ago (rule 5); call when idle."""
        if self._resume is not None or self._position is None:
            return None
        due = [k for k in self._open if k[1] + MINUTE_MS + self.grace_ms <= now_ms]
        if not due:
            return None
        before = self._checkpoint(tick_ms=now_ms)
        flush = self._flush(due, "idle")
        if len(before.to_metadata()) > MAX_METADATA:
            return flush  # cannot be made replayable; the Lambda de-duplicates by trade
        return Flush(flush.batches, flush.checkpoint, before, "idle")

    def end_replay(self) -> list[Flush]:
        """End the replay window early: the log ends before the checkpoint's position (records
        were deleted by retention, or the topic was re-created)."""
        return self._end_replay() if self._resume is not None else []

    def drain(self) -> Flush | None:
        """Everything held, for shutdown (a cut, so the commit leaves nothing to replay)."""
        if self._resume is not None or self._position is None:
            return None
        return self._cut("shutdown") if self._open else None

    # ------------------------------------------------------------------ internals

    def _join(self, key: GroupKey, offset: int, line: bytes) -> _Open:
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = _Open(key[0], key[1], offset, offset)
        group.lines.append(line)
        group.last_offset = offset
        return group

    def _replayed(self, offset: int, symbol: str | None, time_ms: int, line: bytes) -> None:
        self._position = offset + 1
        if symbol is None:
            self._last = None
            return
        minute = minute_of(time_ms)
        key = (group_of(self.layout, symbol), minute)
        self._last = key
        first = self._resume_held.get((group_of(self._resume_layout, symbol), minute))
        if first is not None and offset >= first:
            self._join(key, offset, line)
        else:
            self.skipped += 1

    def _end_replay(self) -> list[Flush]:
        resume, self._resume = self._resume, None
        assert resume is not None
        self._watermark = resume.watermark
        self._position = max(self._position or 0, resume.position)
        if resume.tick_ms is None:
            if self._resume_layout is self.layout or resume.last is None:
                self._last = resume.last
            elif self.layout is Layout.PER_MINUTE:  # rule 8: the last record's group, here
                self._last = (EVERY_SYMBOL, resume.last[1])
            # else (per_minute -> per_symbol) the replayed record set _last, or none was read
            return self._flush_due()
        due = [k for k in self._open if k[1] + MINUTE_MS + self.grace_ms <= resume.tick_ms]
        return [self._flush(due, "idle")] if due else []

    def _flush_due(self) -> list[Flush]:
        limit = self._watermark - self.grace_ms - MINUTE_MS
        due = [k for k in self._open if k[1] <= limit and k != self._last]
        if not due:
            return []
        flush = self._flush(due, "due")
        if len(flush.checkpoint.to_metadata()) > MAX_METADATA:
            cut = self._cut("checkpoint_size")
            return [Flush(flush.batches + cut.batches, cut.checkpoint, None, cut.reason)]
        return [flush]

    def _flush(self, keys: list[GroupKey], reason: str) -> Flush:
        batches = tuple(self._batch(self._open.pop(k)) for k in sorted(keys))
        return Flush(batches, self._checkpoint(), None, reason)

    def _cut(self, reason: str) -> Flush:
        return self._flush(list(self._open), reason)

    def _batch(self, group: _Open) -> Batch:
        return Batch(
            self.topic,
            self.partition,
            group.symbol,
            group.minute_ms,
            group.first_offset,
            group.last_offset,
            tuple(group.lines),
        )

    def _checkpoint(self, tick_ms: int | None = None) -> Checkpoint:
        assert self._position is not None
        held = tuple(sorted((g.symbol, g.minute_ms, g.first_offset) for g in self._open.values()))
        offset = min((first for _, _, first in held), default=self._position)
        last = None if tick_ms is not None else self._last
        return Checkpoint(offset, self._position, self._watermark, held, last, tick_ms)
