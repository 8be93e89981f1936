"""The shape of a trade stream, to compare the sample with real recordings
(``python -m scripts.shape FILE...``): rate, buy/sell mix, quantity distribution,
fills per aggTrade, same-time sweeps, side runs, price range."""

from __future__ import annotations

import itertools
import statistics
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradepipe.core import Trade
from tradepipe.replay.tape import load_tape


def shape(trades: Sequence[Trade]) -> dict[str, Any]:
    """Summary figures of one symbol's trades (in tape order)."""
    n = len(trades)
    if n < 2:
        return {"aggtrades": n}
    span_min = max(1, trades[-1].time_ms - trades[0].time_ms) / 60_000
    per_minute: dict[int, int] = {}
    for t in trades:
        per_minute[t.time_ms // 60_000] = per_minute.get(t.time_ms // 60_000, 0) + 1
    full = list(per_minute.values())[1:-1] or list(per_minute.values())
    qs = sorted(t.quantity for t in trades)
    runs, run = [], 1
    for a, b in itertools.pairwise(trades):
        if a.buyer_is_maker == b.buyer_is_maker:
            run += 1
        else:
            runs.append(run)
            run = 1
    runs.append(run)
    prices = [t.price for t in trades]
    return {
        "aggtrades": n,
        "span_minutes": round(span_min, 2),
        "aggtrades_per_minute": round(n / span_min, 1),
        "per_minute_min_max": (min(full), max(full)),
        "sell_share_m_true": round(sum(t.buyer_is_maker for t in trades) / n, 3),
        "qty_p10_p50_p90_p99": tuple(str(qs[int(n * p)]) for p in (0.1, 0.5, 0.9, 0.99)),
        "qty_max": str(qs[-1]),
        "trades_per_aggtrade": round(sum(t.trade_count for t in trades) / n, 3),
        "same_time_as_previous": round(
            sum(a.time_ms == b.time_ms for a, b in itertools.pairwise(trades)) / n, 3
        ),
        "mean_side_run": round(statistics.mean(runs), 2),
        "price_first_min_max": (str(prices[0]), str(min(prices)), str(max(prices))),
        "range_pct_of_price": str(
            ((max(prices) - min(prices)) / prices[0] * 100).quantize(Decimal("0.001"))
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    files = list(sys.argv[1:] if argv is None else argv)
    tape = load_tape(files)
    for symbol in tape.symbols:
        rows = shape([t for t in tape.trades if t.symbol == symbol])
        print(symbol, *(f"  {k}: {v}" for k, v in rows.items()), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
