"""Publication over time: speed, rebased times, the record file, looping, the start rule."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect

from tradepipe.core import Trade, aggregate, parse_event
from tradepipe.replay import Tape, tape_of

from .helpers import StartEmulator, drain


async def replay_seconds(tape: Tape, start_emulator: StartEmulator, speed: float) -> float:
    """Wall time from subscription to the last trade received, for a client of all streams."""
    streams = "/".join(s.lower() + "@aggTrade" for s in tape.symbols)
    async with start_emulator(tape, speed=speed) as emu:
        async with connect(f"{emu.ws_url}/stream?streams={streams}", ping_interval=None) as ws:
            started = time.monotonic()
            received = 0
            async with asyncio.timeout(120):
                while received < len(tape.trades):
                    await ws.recv()
                    received += 1
            return time.monotonic() - started


async def test_higher_speed_is_faster_and_never_ahead_of_the_clock(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    span_s = (real_tape.last_time_ms - real_tape.first_time_ms) / 1000  # ~91 s of data
    at_50 = await replay_seconds(real_tape, start_emulator, 50)
    at_200 = await replay_seconds(real_tape, start_emulator, 200)
    at_0 = await replay_seconds(real_tape, start_emulator, 0)
    # the clock never runs ahead: a replay takes at least span / speed
    assert at_50 >= span_s / 50 * 0.95
    assert at_200 >= span_s / 200 * 0.95
    # and a higher speed is faster; 0 is as fast as possible (loose bounds, not timings)
    assert at_200 < at_50 < span_s / 50 + 5
    assert at_0 < at_200


async def test_rebased_times_track_the_wall_clock(
    real_tape: Tape, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    record = tmp_path / "served.ndjson"
    speed = 100.0
    async with start_emulator(
        real_tape, speed=speed, rebase_time=True, record_path=str(record)
    ) as emu:
        async with connect(f"{emu.ws_url}/ws/btcusdt@aggTrade", ping_interval=None) as ws:
            now_ms = time.time() * 1000
            first = msgspec.json.decode(await ws.recv())
            arrivals = [(time.time() * 1000, first["T"])]
            async with asyncio.timeout(30):
                while len(arrivals) < 1227:
                    msg = msgspec.json.decode(await ws.recv())
                    arrivals.append((time.time() * 1000, msg["T"]))
        await emu.finished.wait()
    assert abs(first["T"] - now_ms) < 2000  # the first trade is "now"
    data_span = real_tape.last_time_ms - real_tape.first_time_ms
    served_span = arrivals[-1][1] - arrivals[0][1]
    assert abs(served_span - data_span / speed) < 200  # compressed by the speed
    lags = [arrived - served for arrived, served in arrivals]
    lags.sort()
    assert lags[len(lags) // 2] < 250  # served T stays close to the wall clock
    assert lags[int(len(lags) * 0.95)] < 1000
    # the record holds exactly what was served, rebased: it is the tally to check against
    recorded = [parse_event(line) for line in record.read_bytes().splitlines()]
    assert len(recorded) == len(real_tape.trades)
    assert [t.agg_id for t in recorded] == [t.agg_id for t in real_tape.trades]
    assert [t.time_ms for t in recorded if t.symbol == "BTCUSDT"] == [s for _, s in arrivals]


async def test_record_tallies_with_the_input(
    real_tape: Tape, start_emulator: StartEmulator, tmp_path: Path
) -> None:
    record = tmp_path / "served.ndjson"
    async with start_emulator(real_tape, speed=0, start_now=True, record_path=str(record)) as emu:
        await emu.finished.wait()
    served = [parse_event(line) for line in record.read_bytes().splitlines()]
    assert served == list(real_tape.trades)
    assert aggregate(served) == aggregate(real_tape.trades)


async def test_loop_continues_ids_and_times(real_tape: Tape, start_emulator: StartEmulator) -> None:
    short = tape_of([t for t in real_tape.trades if t.symbol == "BTCUSDT"][:40])
    async with start_emulator(short, speed=0, loop=True) as emu:
        async with connect(f"{emu.ws_url}/ws/btcusdt@aggTrade", ping_interval=None) as ws:
            got: list[Trade] = []
            async with asyncio.timeout(10):
                while len(got) < 130:
                    got.append(parse_event(await ws.recv()))
    ids = [t.agg_id for t in got]
    assert ids == list(range(ids[0], ids[0] + 130))  # contiguous, nothing repeats
    assert all(a.time_ms <= b.time_ms for a, b in itertools.pairwise(got))
    assert all(a.last_id + 1 == b.first_id for a, b in itertools.pairwise(got))
    assert got[40].price == got[0].price and got[40].time_ms > got[39].time_ms


async def test_clock_starts_with_the_first_subscription(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with start_emulator(real_tape, speed=0) as emu:
        await asyncio.sleep(0.3)
        assert emu.published.count == 0
        assert not emu.clock.started
        async with connect(f"{emu.ws_url}/ws/ethusdt@aggTrade", ping_interval=None) as ws:
            got = await drain(ws)
        assert len(got) == 506  # nothing was lost before the client was up
