"""Appends seeded batches to a spool (and trims it now and then) until it is SIGKILLed; prints
each transaction once it has returned (so once it is durable). Test use only: see
``tests/sink/test_spool.py``. Usage: ``spool_writer.py DIR SEED``."""

from __future__ import annotations

import random
import sys

from tradepipe.sink.checkpoint import Checkpoint
from tradepipe.sink.spool import SPOOL_FILE, Entry, SpoolFile

TOPIC = "crash"


def line(offset: int) -> bytes:
    return b'{"a":%d,"pad":"%s"}' % (offset, b"x" * (offset % 97))


def main(directory: str, seed: int) -> None:
    rng = random.Random(seed)
    spool = SpoolFile(f"{directory}/{SPOOL_FILE}")
    next_offset = trimmed = 0
    for i in range(100_000):
        size = rng.randint(1, 3_000)
        entries = [
            Entry(o, "BTCUSDT" if o % 5 else None, 1_600_000_000_000 + o, line(o))
            for o in range(next_offset, next_offset + size)
        ]
        spool.append(TOPIC, 0, entries)
        next_offset += size
        print(f"appended {i} {next_offset}", flush=True)
        if i % 4 == 3:
            trimmed = max(trimmed, rng.randint(max(0, next_offset - 4_000), next_offset))
            spool.commit(TOPIC, 0, Checkpoint(trimmed, next_offset, 0, ()))
            print(f"trimmed {i} {trimmed}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
