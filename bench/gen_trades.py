"""Seeded synthetic aggTrades for benchmarks: ``python bench/gen_trades.py N OUT.ndjson``."""

from __future__ import annotations

import random
import sys

import msgspec


def generate(n: int, seed: int = 7, start_ms: int = 1_732_406_400_000) -> list[bytes]:
    rng = random.Random(seed)
    price = 9_712_345  # cents
    t = start_ms
    f = 4_200_000_000
    lines = []
    for a in range(3_300_000_000, 3_300_000_000 + n):
        price = max(100, price + rng.choice((-2, -1, 0, 0, 1, 2)))
        t += rng.choice((0, 0, 1, 3, 10, 40))
        k = rng.choice((1, 1, 1, 2, 3))
        q = rng.randint(1, 2_000_000)
        lines.append(
            msgspec.json.encode(
                {
                    "e": "aggTrade",
                    "E": t + 1,
                    "s": "BTCUSDT",
                    "a": a,
                    "p": f"{price // 100}.{price % 100:02d}000000",
                    "q": f"{q // 100_000_000}.{q % 100_000_000:08d}",
                    "f": f,
                    "l": f + k - 1,
                    "T": t,
                    "m": rng.random() < 0.48,
                    "M": True,
                }
            )
        )
        f += k
    return lines


if __name__ == "__main__":
    count, out = int(sys.argv[1]), sys.argv[2]
    with open(out, "wb") as fh:
        fh.write(b"\n".join(generate(count)) + b"\n")
