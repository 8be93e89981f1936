"""Order-flow columns of a minute: the largest aggTrade and notional size buckets, per side.

Rules:

1. **Notional.** An aggTrade's notional is its quote amount ``p x q`` (exact, 16 places), in
   the symbol's quote asset ("usd" in the names, like the seed's ``total_usd_*``).
2. **Bounds in one place.** :data:`BOUNDS` splits notionals into :data:`BUCKETS`; a bucket
   holds ``lower <= notional < upper``: a trade of exactly 1,000 is in ``1k_10k``, not ``lt1k``.
3. **Per side, per bucket:** ``count_<bucket>_<side>`` aggTrades and ``usd_<bucket>_<side>``
   their summed notional; ``max_usd_<side>`` is the largest single notional (``0`` when the
   side had no trades). The buckets of a side add up to its ``total_count_*``/``total_usd_*``.
4. **Mergeable.** Counts and sums add, maxima take the larger: merging the flows of disjoint
   trade sets equals the flow of their union, in any order (the core's rule 3).
5. **Unknown is not zero.** A row stored before these columns existed has them NULL: its flow
   is ``None``. Merging ``None`` with anything gives ``None`` (new trades' counts are not the
   minute's counts); only a rebuild from every trade of the minute fills them in
   (``tradepipe.store.upsert``, rule 7). Merging and the integer hot path live with the rest
   of the arithmetic in :mod:`tradepipe.core.aggregate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

# Notional bucket bounds, in quote units (rule 2); WHALE_FROM: where "whale" buckets start.
BOUNDS = (1_000, 10_000, 100_000, 1_000_000)
BUCKETS = ("lt1k", "1k_10k", "10k_100k", "100k_1m", "ge1m")
WHALE_FROM = 100_000
WHALE_BUCKETS = tuple(b for b, lo in zip(BUCKETS, (0, *BOUNDS), strict=True) if lo >= WHALE_FROM)
# The bounds as integers scaled by 1e16: p8 x q8 (both scaled by 1e8) compares with them as is.
BOUNDS16 = tuple(b * 10**16 for b in BOUNDS)
N_BUCKETS = len(BUCKETS)

MAX_COLUMNS = ("max_usd_b", "max_usd_s")
COUNT_COLUMNS = tuple(f"count_{b}_{side}" for b in BUCKETS for side in "bs")
USD_COLUMNS = tuple(f"usd_{b}_{side}" for b in BUCKETS for side in "bs")
# Row order: the two maxima, then per bucket count_b, count_s, usd_b, usd_s.
FLOW_COLUMNS = (
    *MAX_COLUMNS,
    *(c for b in BUCKETS for c in (f"count_{b}_b", f"count_{b}_s", f"usd_{b}_b", f"usd_{b}_s")),
)
ZERO = Decimal(0)


def bucket_of(notional: Decimal) -> str:
    """The bucket of one notional (rule 2); the reference the integer path is tested against."""
    for name, upper in zip(BUCKETS, BOUNDS, strict=False):
        if notional < upper:
            return name
    return BUCKETS[-1]


@dataclass(frozen=True, slots=True)
class OrderFlow:
    """Rule 3's values; tuples indexed like :data:`BUCKETS`."""

    max_b: Decimal
    max_s: Decimal
    counts_b: tuple[int, ...]
    counts_s: tuple[int, ...]
    usd_b: tuple[Decimal, ...]
    usd_s: tuple[Decimal, ...]

    def values(self) -> dict[str, int | Decimal]:
        """Column -> value, for every name in :data:`FLOW_COLUMNS`."""
        out: dict[str, int | Decimal] = {"max_usd_b": self.max_b, "max_usd_s": self.max_s}
        for i, b in enumerate(BUCKETS):
            out[f"count_{b}_b"] = self.counts_b[i]
            out[f"count_{b}_s"] = self.counts_s[i]
            out[f"usd_{b}_b"] = self.usd_b[i]
            out[f"usd_{b}_s"] = self.usd_s[i]
        return out

    @classmethod
    def of_values(cls, values: Mapping[str, object]) -> OrderFlow | None:
        """Stored columns -> the flow; ``None`` when any is NULL (rule 5: a row from before)."""
        if any(values.get(c) is None for c in FLOW_COLUMNS):
            return None

        def dec(c: str) -> Decimal:
            v = values[c]
            return v if isinstance(v, Decimal) else Decimal(str(v))

        def num(c: str) -> int:
            return int(str(values[c]))

        return cls(
            max_b=dec("max_usd_b"),
            max_s=dec("max_usd_s"),
            counts_b=tuple(num(f"count_{b}_b") for b in BUCKETS),
            counts_s=tuple(num(f"count_{b}_s") for b in BUCKETS),
            usd_b=tuple(dec(f"usd_{b}_b") for b in BUCKETS),
            usd_s=tuple(dec(f"usd_{b}_s") for b in BUCKETS),
        )
