"""Every published trade reaches a subscribed client, the first and the last included, and the
record file holds exactly what was sent — at speeds 0, 1 and 10, and when the clock is held with
``pause()`` until the client is up (what ``bench/produce.py`` does)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tradepipe.core import Trade, parse_event
from tradepipe.replay import Tape, tape_of

from .helpers import StartEmulator, drain_raw

SPAN_MS = 2000
URL = "/ws/btcusdt@aggTrade"
RECEIVE_SECONDS = SPAN_MS / 1000 * 2 + 10  # the whole tape at the slowest speed, with margin


@pytest.fixture(scope="module")
def short_tape(real_tape: Tape) -> Tape:
    """The first 300 real BTCUSDT trades, their times squeezed into ``SPAN_MS`` (order, ids and
    same-``T`` groups kept), so a speed-1 replay takes two seconds."""
    btc = [t for t in real_tape.trades if t.symbol == "BTCUSDT"][:300]
    first, span = btc[0].time_ms, btc[-1].time_ms - btc[0].time_ms
    return tape_of(
        msgspec.structs.replace(t, time_ms=first + (t.time_ms - first) * SPAN_MS // span)
        for t in btc
    )


async def receive(ws: ClientConnection, count: int) -> list[bytes]:
    """``count`` messages as received, then check that nothing else follows."""
    got: list[bytes] = []
    async with asyncio.timeout(RECEIVE_SECONDS):
        while len(got) < count:
            msg = await ws.recv()
            got.append(msg.encode() if isinstance(msg, str) else msg)
    assert await drain_raw(ws) == []
    return got


def sent_ids(raw: list[bytes]) -> list[int]:
    return [parse_event(m).agg_id for m in raw]


@pytest.mark.parametrize("speed", [0.0, 1.0, 10.0])
async def test_every_trade_arrives_and_the_record_is_what_was_sent(
    short_tape: Tape, start_emulator: StartEmulator, tmp_path: Path, speed: float
) -> None:
    record = tmp_path / "served.ndjson"
    trades = list(short_tape.trades)
    async with start_emulator(short_tape, speed=speed, record_path=str(record)) as emu:
        async with connect(emu.ws_url + URL, ping_interval=None) as ws:
            started = time.monotonic()
            got = await receive(ws, len(trades))
            took = time.monotonic() - started
            async with asyncio.timeout(5):
                await emu.finished.wait()
    assert [parse_event(m) for m in got] == trades  # the last one included
    assert record.read_bytes().splitlines() == got
    if speed:
        assert took >= SPAN_MS / 1000 / speed * 0.9  # really replayed over time


@pytest.mark.parametrize("speed", [0.0, 1.0, 10.0])
async def test_a_clock_held_until_the_client_is_up_loses_nothing(
    short_tape: Tape, start_emulator: StartEmulator, tmp_path: Path, speed: float
) -> None:
    """``start_now`` then ``pause()`` at once: nothing may be published until ``resume()``.
    (Before the fix, at speed > 0 the trades of the tape's first millisecond were published while
    paused, to nobody: the producer benchmark's latency phase came up 5 of 25,000 short.)"""
    record = tmp_path / "served.ndjson"
    trades = list(short_tape.trades)
    opts = {"speed": speed, "start_now": True, "rebase_time": True, "record_path": str(record)}
    async with start_emulator(short_tape, **opts) as emu:
        emu.pause()
        async with connect(emu.ws_url + URL, ping_interval=None) as ws:
            await asyncio.sleep(0.3)  # the publisher has run (and found the clock paused)
            assert emu.published.count == 0
            assert record.read_bytes() == b""
            resumed_ms = time.time() * 1000
            emu.resume()
            got = await receive(ws, len(trades))
    assert sent_ids(got) == [t.agg_id for t in trades]
    assert record.read_bytes().splitlines() == got
    # served with rebased times, everything else as on the tape
    served: list[Trade] = [parse_event(m) for m in got]
    assert [
        msgspec.structs.replace(s, time_ms=t.time_ms) for s, t in zip(served, trades, strict=True)
    ] == trades
    assert abs(served[0].time_ms - resumed_ms) < 1000  # the first trade is served as "now"


async def test_a_pause_mid_tape_holds_everything_until_resume(
    short_tape: Tape, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    record = tmp_path / "served.ndjson"
    trades = list(short_tape.trades)
    async with start_emulator(short_tape, speed=1.0, record_path=str(record)) as emu:
        async with connect(emu.ws_url + URL, ping_interval=None) as ws:
            async with asyncio.timeout(10):
                await emu.wait_published(100)
            emu.pause()
            held = emu.published.count
            await asyncio.sleep(0.5)
            assert emu.published.count == held  # nothing more while paused
            emu.resume()
            got = await receive(ws, len(trades))
    assert [parse_event(m) for m in got] == trades
    assert record.read_bytes().splitlines() == got
