"""Sets of aggregate trade ids, stored as sorted, disjoint, coalesced inclusive ranges.

Binance's aggregate ids are (observed to be) consecutive per symbol, so the trades of one
minute are almost always a single range: ``"665076760-665076999"``. The text form
(``"a-b,c-d"``, ``"a"`` for a single id) is what the database keeps beside each row.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IdRanges:
    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_ids(cls, ids: Iterable[int]) -> IdRanges:
        out: list[tuple[int, int]] = []
        for i in sorted(set(ids)):
            if out and out[-1][1] + 1 == i:
                out[-1] = (out[-1][0], i)
            else:
                out.append((i, i))
        return cls(tuple(out))

    @classmethod
    def parse(cls, text: str) -> IdRanges:
        """Inverse of ``str()``; raises ``ValueError`` on malformed text."""
        pairs: list[tuple[int, int]] = []
        for part in filter(None, text.split(",")):
            lo, sep, hi = part.partition("-")
            pairs.append((int(lo), int(hi) if sep else int(lo)))
        return cls._normalised(pairs)

    @classmethod
    def _normalised(cls, pairs: Iterable[tuple[int, int]]) -> IdRanges:
        out: list[tuple[int, int]] = []
        for lo, hi in sorted(pairs):
            if lo > hi or lo < 0:
                raise ValueError(f"bad id range {lo}-{hi}")
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return cls(tuple(out))

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)

    def __contains__(self, agg_id: object) -> bool:
        if not isinstance(agg_id, int):
            return False
        i = bisect_right(self.ranges, (agg_id, float("inf"))) - 1
        return i >= 0 and self.ranges[i][0] <= agg_id <= self.ranges[i][1]

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def union(self, other: IdRanges) -> IdRanges:
        return self._normalised(self.ranges + other.ranges)

    def isdisjoint(self, other: IdRanges) -> bool:
        a, b = self.ranges, other.ranges
        i = j = 0
        while i < len(a) and j < len(b):
            if a[i][1] < b[j][0]:
                i += 1
            elif b[j][1] < a[i][0]:
                j += 1
            else:
                return False
        return True
