"""Per-symbol order, de-duplication and gap detection by aggregate trade id.

Rules (one :class:`Sequencer` per symbol; no I/O, no clock):

1. ``last_id`` is the highest aggregate id handed on (emitted). The first trade ever offered
   sets it: there is nothing to compare the very first trade with.
2. A trade with ``agg_id <= last_id``, or one already held, is a duplicate: dropped. This is
   what de-duplicates the overlap of two connections during a rollover and REST pages that
   cross live trades.
3. A trade with ``agg_id == last_id + 1`` is emitted at once, followed by every held trade that
   now continues the sequence. Emission is therefore always in id order, with no repeats.
4. A trade further ahead is *held*: ids ``last_id + 1 .. min(held) - 1`` are missing, and
   :meth:`Sequencer.missing` reports that range for REST backfill. Backfilled trades are offered
   like live ones, so live and REST trades merge in id order whatever arrives first.
5. After a disconnect (or trades refused because the buffer was full) nothing may be held yet,
   yet trades were probably missed: :meth:`Sequencer.want_catch_up` asks for an open-ended
   backfill from ``last_id + 1`` until REST has nothing newer. Each call bumps
   :attr:`Sequencer.catch_up_wanted`; :meth:`Sequencer.caught_up` given the value seen when
   the REST request was made ends the catch-up only if no new reason arrived since (a request
   made before a refusal cannot answer for the refused trade). *When* a REST answer may end a
   catch-up at all is the intake's rule (after the current connection delivered).
6. Ids REST does not have (a page starting later than asked, an empty page for a bounded range)
   or that could not be fetched in time are *skipped* with :meth:`Sequencer.skip_to`: the caller
   logs and counts them; they are never silently passed over.
7. At most ``max_held`` trades are held — across every sequencer sharing one
   :class:`HoldBudget` (the process-wide bound). Past that, this symbol's highest id is dropped
   instead of stored (or the new trade itself, when it is the highest or this symbol holds
   nothing); that is safe because a dropped id becomes a gap again and is fetched from REST
   later: once the hold drains, an open-ended catch-up runs (even if no live trade follows).
8. Held trades the exchange does not know (REST answered "nothing from ``last_id + 1``" for
   the whole give-up time while they waited) are taken out with :meth:`release_held`, not
   skipped to: one absurd live id must not make every real trade after it a duplicate. The
   caller quarantines them and starts a catch-up, so any that were real come back from REST.
"""

from __future__ import annotations

import bisect

from tradepipe.producer.records import Record


class HoldBudget:
    """How many trades the sequencers sharing it may hold together (rule 7)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the hold limit must be >= 1")
        self.limit = limit
        self.held = 0


class Sequencer:
    def __init__(
        self,
        symbol: str,
        max_held: int = 20_000,
        last_id: int | None = None,
        budget: HoldBudget | None = None,
    ) -> None:
        self.symbol = symbol
        self.budget = budget if budget is not None else HoldBudget(max_held)
        self.max_held = self.budget.limit
        self.last_id = last_id
        self.catch_up = False
        self.catch_up_wanted = 0  # rule 5: bumped by every want_catch_up()
        self._dropped_since_catch_up = False
        self.gaps = 0  # distinct gaps seen (a hold started from an empty hold)
        self.dropped = 0  # held trades dropped for room (rule 7); REST fetches them again
        self._held: dict[int, Record] = {}
        self._held_ids: list[int] = []  # sorted

    @property
    def held(self) -> int:
        return len(self._held_ids)

    def held_has(self, agg_id: int) -> bool:
        return agg_id in self._held

    def offer(self, record: Record) -> list[Record] | None:
        """Returns the records to emit now, in order (maybe ``[]``); ``None`` for a duplicate."""
        agg_id = record.agg_id
        last = self.last_id
        if last is None:
            self.last_id = agg_id
            return [record, *self._drain()]
        if agg_id <= last or agg_id in self._held:
            return None
        if agg_id == last + 1:
            self.last_id = agg_id
            return [record, *self._drain()]
        self._hold(record)
        return []

    def missing(self) -> tuple[int, int | None] | None:
        """The id range to backfill: ``(first, last)``, ``last`` ``None`` for open-ended."""
        if self.last_id is None:
            return None
        if self._held_ids:
            return self.last_id + 1, self._held_ids[0] - 1
        if self.catch_up or self._dropped_since_catch_up:
            return self.last_id + 1, None
        return None

    def want_catch_up(self) -> None:
        """Trades may have been missed (rule 5); nothing to do before the first trade."""
        if self.last_id is not None:
            self.catch_up = True
            self.catch_up_wanted += 1

    def caught_up(self, wanted: int | None = None) -> bool:
        """End the catch-up (rule 5): unless ``wanted`` (the :attr:`catch_up_wanted` seen when
        the REST request went out) is older than the latest reason. True if it ended."""
        if wanted is not None and wanted != self.catch_up_wanted:
            return False
        self.catch_up = False
        self._dropped_since_catch_up = False
        return True

    def held_range(self) -> tuple[int, int] | None:
        """The lowest and highest id held, if any."""
        return (self._held_ids[0], self._held_ids[-1]) if self._held_ids else None

    def skip_to(self, agg_id: int) -> tuple[int, list[Record]]:
        """Declare ids up to ``agg_id`` unobtainable (rule 6): ``(how many, records emitted)``."""
        if self.last_id is None or agg_id <= self.last_id:
            return 0, []
        skipped = agg_id - self.last_id
        # Held trades at or below agg_id would be below last_id: emit them, in order.
        emitted: list[Record] = []
        while self._held_ids and self._held_ids[0] <= agg_id:
            held_id = self._held_ids.pop(0)
            emitted.append(self._held.pop(held_id))
            self.budget.held -= 1
            skipped -= 1
        self.last_id = agg_id
        return skipped, [*emitted, *self._drain()]

    def release_held(self) -> list[Record]:
        """Take every held trade out of the hold, in id order (rule 8); ``last_id`` stays."""
        out = [self._held.pop(agg_id) for agg_id in self._held_ids]
        self.budget.held -= len(out)
        self._held_ids.clear()
        return out

    def give_up(self) -> tuple[int, list[Record]]:
        """Abandon the current missing range (backfill failed for too long)."""
        self.catch_up = False
        self._dropped_since_catch_up = False
        if not self._held_ids:
            return 0, []
        return self.skip_to(self._held_ids[0] - 1)

    def _hold(self, record: Record) -> None:
        if not self._held_ids:
            self.gaps += 1
        self.catch_up = False  # a held live trade bounds what is missing (rule 5)
        if self.budget.held >= self.budget.limit:
            self.dropped += 1
            self._dropped_since_catch_up = True
            if not self._held_ids or record.agg_id > self._held_ids[-1]:
                return
            del self._held[self._held_ids.pop()]
            self.budget.held -= 1
        self._held[record.agg_id] = record
        self.budget.held += 1
        if not self._held_ids or record.agg_id > self._held_ids[-1]:
            self._held_ids.append(record.agg_id)  # the usual case: live ids only grow
        else:
            bisect.insort(self._held_ids, record.agg_id)

    def _drain(self) -> list[Record]:
        out: list[Record] = []
        assert self.last_id is not None
        ids = self._held_ids
        i = 0
        while i < len(ids) and ids[i] == self.last_id + 1:
            out.append(self._held.pop(ids[i]))
            self.last_id = ids[i]
            i += 1
        if i:
            del ids[:i]
            self.budget.held -= i
        return out
