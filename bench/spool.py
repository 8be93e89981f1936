"""Benchmark the sink's spool (``tradepipe.sink.spool``): records/second appended durably, read
back and trimmed, with ``synchronous=FULL`` (what the sink uses) and ``NORMAL``, by batch size
(the reader appends one transaction per partition and fetch).

    .venv/bin/python bench/spool.py [--records N] [--dir DIR]

Real aggTrade lines (the recorded BTCUSDT file, cycled) in a spool under ``--dir`` (default: a
temporary folder on the same disk as the repository's ``.stack``); prints one line per
setting and batch size, then the file's bytes per record.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

from tradepipe.core import parse_event
from tradepipe.sink.checkpoint import Checkpoint
from tradepipe.sink.spool import SPOOL_FILE, Entry, SpoolFile, Synchronous

ROOT = Path(__file__).resolve().parents[1]
DATA = (
    ROOT.parent
    / "shared"
    / "data"
    / "binance"
    / "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson"
)


def entries(n: int) -> list[Entry]:
    lines = [x for x in DATA.read_bytes().splitlines() if x.strip()]
    out = []
    for offset, line in enumerate(islice(cycle(lines), n)):
        t = parse_event(line)
        out.append(Entry(offset, t.symbol, t.time_ms, line))
    return out


def run(directory: Path, sync: Synchronous, batch: int, records: list[Entry]) -> tuple[float, ...]:
    shutil.rmtree(directory, ignore_errors=True)
    spool = SpoolFile(directory / SPOOL_FILE, sync)
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        spool.append("bench", 0, records[i : i + batch])
    appended = time.perf_counter() - started
    used = spool.used_bytes()
    started = time.perf_counter()
    offset = 0
    while got := spool.read("bench", 0, offset, 5_000):
        offset = got[-1].offset + 1
        spool.commit("bench", 0, Checkpoint(offset, offset, 0, ()))
    drained = time.perf_counter() - started
    spool.close()
    return len(records) / appended, len(records) / drained, used / len(records)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--dir", default=str(ROOT / ".stack" / "spool-bench"))
    args = ap.parse_args()
    records = entries(args.records)
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        for sync in ("FULL", "NORMAL"):
            for batch in (1, 100, 1_000, 10_000):
                n = records if batch > 1 else records[: min(len(records), 5_000)]
                append, drain, per = run(Path(tmp) / f"{sync}-{batch}", sync, batch, n)  # type: ignore[arg-type]
                print(
                    f"synchronous={sync:<6} batch={batch:>6}: append {append:>9,.0f} rec/s, "
                    f"read+trim {drain:>9,.0f} rec/s, {per:.0f} B/record on disk"
                )


if __name__ == "__main__":
    main()
