"""The bounded buffer between the feed and the broker.

Records wait here from the moment they are accepted until the broker acknowledges them, so a
broker outage loses nothing: failed sends are *rewound* and sent again. The buffer is bounded
by ``max_records``; :attr:`Outbox.full` tells the feed to stop accepting live trades (they are
fetched again from REST later, see :mod:`tradepipe.producer.sequencer` rule 5). Emitted records
are always appended, so the true bound is ``max_records`` plus what was already on its way (one
REST page, the trades released from the sequencer's hold).

Layout: ``records[:sent]`` are with the sink awaiting acknowledgement; ``records[sent:]`` are
waiting to be sent. Acknowledgements arrive in order, so they pop from the left.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from tradepipe.producer.records import Record


class Outbox:
    def __init__(self, max_records: int) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.max_records = max_records
        self._records: deque[Record] = deque()
        self._sent = 0
        self._unsent = asyncio.Event()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._records)

    @property
    def full(self) -> bool:
        return len(self._records) >= self.max_records

    @property
    def room(self) -> int:
        return max(0, self.max_records - len(self._records))

    @property
    def in_flight(self) -> int:
        return self._sent

    def extend(self, records: Iterable[Record]) -> None:
        before = len(self._records)
        self._records.extend(records)
        if len(self._records) > before:
            self._unsent.set()

    async def take(self, max_records: int) -> list[Record]:
        """Wait for unsent records, then mark up to ``max_records`` of them sent."""
        while self._sent >= len(self._records):
            self._unsent.clear()
            await self._unsent.wait()
        return self.take_now(max_records)

    def take_now(self, max_records: int) -> list[Record]:
        """Mark up to ``max_records`` unsent records sent (none waiting: an empty list)."""
        start = self._sent
        stop = min(len(self._records), start + max_records)
        chunk = [self._records[i] for i in range(start, stop)]
        self._sent = stop
        return chunk

    def ack(self, count: int) -> None:
        """The oldest ``count`` sent records are acknowledged: forget them."""
        if count > self._sent:
            raise ValueError(f"ack of {count} records but only {self._sent} were sent")
        for _ in range(count):
            self._records.popleft()
        self._sent -= count
        self._changed.set()

    def rewind(self) -> None:
        """Every unacknowledged record is to be sent again (after a failed send)."""
        self._sent = 0
        if self._records:
            self._unsent.set()

    async def wait_room(self, needed: int) -> None:
        while self.room < needed:
            self._changed.clear()
            await self._changed.wait()

    @property
    def oldest_at(self) -> float | None:
        """When the oldest unacknowledged record reached us (monotonic), if any."""
        return self._records[0].received_at if self._records else None

    async def wait_change(self) -> None:
        """Until the next acknowledgement."""
        self._changed.clear()
        await self._changed.wait()

    def unacked(self) -> dict[str, tuple[int, int, int]]:
        """Per symbol: ``(count, lowest id, highest id)`` of the records not acknowledged."""
        out: dict[str, tuple[int, int, int]] = {}
        for r in self._records:
            n, lo, hi = out.get(r.symbol, (0, r.agg_id, r.agg_id))
            out[r.symbol] = (n + 1, min(lo, r.agg_id), max(hi, r.agg_id))
        return out

    async def wait_empty(self) -> None:
        while self._records:
            self._changed.clear()
            await self._changed.wait()
