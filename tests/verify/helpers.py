"""Builders for the verify tests: the sample tape's first minutes, loading, one verify run."""

from __future__ import annotations

from collections.abc import Sequence

from tests.replay.helpers import ROOT

from tradepipe.core import MINUTE_MS, Trade, minute_of
from tradepipe.replay import Tape, load_tape, tape_of
from tradepipe.store import Store
from tradepipe.verify import Report, Request, Verifier, open_exchange

SAMPLE = ROOT / "samples" / "btcusdt-aggtrades-60m.ndjson.gz"
MINUTES = 12


def sample_tape() -> Tape:
    """The first 12 minutes of the shipped BTCUSDT sample (~950 aggTrades a minute)."""
    tape = load_tape([str(SAMPLE)])
    start = minute_of(tape.first_time_ms)
    return tape_of(t for t in tape.trades if t.time_ms < start + MINUTES * MINUTE_MS)


def by_minute(trades: Sequence[Trade]) -> dict[int, list[Trade]]:
    out: dict[int, list[Trade]] = {}
    for t in trades:
        out.setdefault(minute_of(t.time_ms), []).append(t)
    return out


def load(url: str, trades: Sequence[Trade]) -> None:
    store = Store(url)
    try:
        store.upsert(list(trades))
    finally:
        store.close()


async def verify(url: str, rest_url: str, first: int, last: int, repair: bool) -> Report:
    async with open_exchange(rest_url, 6000) as exchange:
        verifier = Verifier(Store(url), exchange)
        try:
            return await verifier.run(Request((), first, last, repair))
        finally:
            await verifier.close()
