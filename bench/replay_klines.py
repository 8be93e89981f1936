"""What the emulator's kline bookkeeping costs per published trade (not a test).

``tradepipe replay`` counts every trade it publishes into its 1-minute klines
(``replay/klines.py``); this times that step alone over the shipped sample (or FILE...), best of
7 passes, and one ``/api/v3/klines`` answer of 1000 minutes' worth of the sample's klines.

    .venv/bin/python bench/replay_klines.py [FILE...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tradepipe.replay import load_tape
from tradepipe.replay.klines import MinuteKlines

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    files = argv or [str(p) for p in sorted((ROOT / "samples").glob("*-aggtrades-*.ndjson.gz"))]
    tape = load_tape(files)
    texts = [(format(t.price, "f"), format(t.quantity, "f")) for t in tape.trades]
    best = float("inf")
    klines = MinuteKlines()
    for _ in range(7):
        klines = MinuteKlines()
        start = time.perf_counter()
        for trade, (p, q) in zip(tape.trades, texts, strict=True):
            klines.add(trade, p, q)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    answers = [klines.select(s, None, None, 1000) for s in tape.symbols]
    select_ms = (time.perf_counter() - start) * 1000
    minutes = sum(len(a) for a in answers)
    print(
        f"{len(tape.trades)} trades: {best / len(tape.trades) * 1e9:,.0f} ns per published trade;"
        f" /api/v3/klines for {minutes} minutes of {len(answers)} symbols: {select_ms:.1f} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
