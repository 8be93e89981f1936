"""Benchmark `tradepipe aggregate`: trades/second on one core over a 1,000,000-trade NDJSON file.

    .venv/bin/python bench/aggregate.py [--trades N] [--file FILE] [--repeat R]

Generates a seeded file (bench/gen_trades.py) unless --file is given, then runs the command's
own code path (read + parse + validate + aggregate + write rows) R times in this process and
prints the best and median rates, plus peak RSS.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tradepipe.commands.aggregate import RejectLog, aggregate_files, write_rows

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--file")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = args.file
    if path is None:
        # Generated in a child process so that its memory does not count in our peak RSS.
        path = str(Path(tempfile.mkdtemp()) / f"bench-{args.trades}.ndjson")
        subprocess.run(
            [sys.executable, str(HERE / "gen_trades.py"), str(args.trades), path], check=True
        )
    rates = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        partials = aggregate_files([path], RejectLog(None, sys.stderr))
        write_rows(partials.values(), "csv", io.StringIO())
        elapsed = time.perf_counter() - start
        n = sum(p.count_b + p.count_s for p in partials.values())
        rates.append(n / elapsed)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"aggregate: {n} trades, best {max(rates):,.0f} trades/s, "
        f"median {statistics.median(rates):,.0f} trades/s, peak RSS {peak_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
