"""What the sink stores next to a committed Kafka offset, so a restart rebuilds the same objects.

A committed offset alone cannot describe the batcher's state: objects of different (group,
minute) interleave within a partition, so when some are written and others still open, records
above the lowest open offset belong partly to written objects and partly to open ones. The
checkpoint says which, exactly; it travels as the offset commit's *metadata* string (Kafka
keeps up to ``offset.metadata.max.bytes`` = 4096 bytes by default, see :data:`MAX_METADATA`).

A checkpoint describes the batcher's state at ``position`` (the next offset it would read):

- ``offset``: the offset committed, the lowest offset held in an open object (or ``position``);
- ``watermark``: the highest trade time seen so far (drives record-time flushing);
- ``held``: each open object as (group, minute, first offset), the group being a symbol
  (``per_symbol``) or ``*`` (``per_minute``: every symbol). An open object holds *every*
  record of its (group, minute) from its first offset up to ``position``; every other record
  in ``[offset, position)`` is already in a written object;
- ``last``: the (group, minute) of the record just before ``position`` (``None`` for a
  malformed record), which the due rule excludes (see :mod:`.batcher`);
- ``tick_ms``: set when the checkpoint was committed *before* a wall-clock flush: on replay,
  that flush is applied when ``position`` is reached, so it happens at the same record.

Text form: ``v1|position|watermark|last|tick|GROUP:minute:first;...`` with minutes as minute
numbers since the epoch and ``-`` for none. A per-minute layout holds one group per open
minute, so its checkpoint stays small whatever the symbol count (a per-symbol one of thousands
of symbols outgrows :data:`MAX_METADATA` and forces cuts).
"""

from __future__ import annotations

from dataclasses import dataclass

from tradepipe.core import MINUTE_MS

MAX_METADATA = 3500  # below Kafka's default offset.metadata.max.bytes (4096), with room

GroupKey = tuple[str, int]  # (symbol or "*", minute start in ms)


class CheckpointError(ValueError):
    """Metadata that is not a checkpoint of this format (e.g. committed by another tool)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int
    position: int
    watermark: int
    held: tuple[tuple[str, int, int], ...]  # (group, minute_ms, first_offset)
    last: GroupKey | None = None
    tick_ms: int | None = None

    def to_metadata(self) -> str:
        last = f"{self.last[0]}:{self.last[1] // MINUTE_MS}" if self.last else "-"
        tick = str(self.tick_ms) if self.tick_ms is not None else "-"
        held = ";".join(f"{s}:{m // MINUTE_MS}:{f}" for s, m, f in self.held)
        return f"v1|{self.position}|{self.watermark}|{last}|{tick}|{held}"

    @classmethod
    def from_metadata(cls, offset: int, text: str) -> Checkpoint:
        """Parse committed metadata; :class:`CheckpointError` if it is not ours."""
        parts = text.split("|")
        if len(parts) != 6 or parts[0] != "v1":
            raise CheckpointError(f"offset metadata {text[:60]!r} is not a sink checkpoint")
        try:
            position, watermark = int(parts[1]), int(parts[2])
            last: GroupKey | None = None
            if parts[3] != "-":
                sym, minute = parts[3].rsplit(":", 1)
                last = (sym, int(minute) * MINUTE_MS)
            tick = None if parts[4] == "-" else int(parts[4])
            held = []
            for item in filter(None, parts[5].split(";")):
                sym, minute, first = item.rsplit(":", 2)
                held.append((sym, int(minute) * MINUTE_MS, int(first)))
        except ValueError:
            raise CheckpointError(f"offset metadata {text[:60]!r} is malformed") from None
        if any(first < offset or first >= position for _, _, first in held):
            raise CheckpointError(f"checkpoint {text[:60]!r} holds offsets outside its window")
        return cls(offset, position, watermark, tuple(held), last, tick)
