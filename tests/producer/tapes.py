"""Small synthetic tapes for the fault repetitions: exact, seeded, any length and rate.

Each symbol trades at a steady rate (a seeded jitter on the gaps) for ``seconds`` of data time
and then the market is *quiet*: nothing more is ever published. Prices and quantities are
exact decimals with 2 and 5 places; ids start at a symbol-specific base so symbols differ.
"""

from __future__ import annotations

import random
from decimal import Decimal

from tradepipe.core import Trade
from tradepipe.replay import Tape, tape_of

START_MS = 1_764_547_200_000  # 2025-12-01 00:00:00 UTC; the emulator rebases times to "now"


def synthetic_tape(
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
    per_symbol: int = 500,
    seconds: float = 5.0,
    seed: int = 0,
) -> Tape:
    rng = random.Random(seed)
    trades: list[Trade] = []
    span_ms = int(seconds * 1000)
    for n, symbol in enumerate(symbols):
        base = 1_000_000 * (n + 1)
        times = sorted(rng.randrange(span_ms) for _ in range(per_symbol))
        for i, offset in enumerate(times):
            trades.append(
                Trade(
                    symbol=symbol,
                    agg_id=base + i,
                    price=Decimal(rng.randrange(10_000, 20_000)) / 100,
                    quantity=Decimal(rng.randrange(1, 100_000)) / 100_000,
                    first_id=10 * (base + i),
                    last_id=10 * (base + i) + rng.randrange(3),
                    time_ms=START_MS + offset,
                    buyer_is_maker=rng.random() < 0.5,
                )
            )
    trades.sort(key=lambda t: (t.time_ms, t.symbol, t.agg_id))
    return tape_of(trades)
