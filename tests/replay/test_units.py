"""The emulator's pure parts: the clock, the published store, the tape, malformed messages."""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradepipe.core import ParseError, SourceError, parse_event
from tradepipe.replay.clock import ReplayClock
from tradepipe.replay.malformed import KINDS, make_malformed, schedule
from tradepipe.replay.store import PublishedTrades, Query
from tradepipe.replay.tape import Tape, tape_of


class FakeTime:
    def __init__(self) -> None:
        self.mono, self.epoch = 100.0, 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.epoch += seconds


def make_clock(speed: float, origin: int = 1_000_000) -> tuple[ReplayClock, FakeTime]:
    t = FakeTime()
    return ReplayClock(speed, origin, monotonic=lambda: t.mono, epoch=lambda: t.epoch), t


def test_clock_waits_for_start_then_runs_at_speed() -> None:
    clock, t = make_clock(10.0)
    assert clock.data_now() == -math.inf
    assert clock.seconds_until(1_000_000) == math.inf
    clock.start()
    assert clock.seconds_until(1_000_000) == 0
    assert clock.seconds_until(1_010_000) == pytest.approx(1.0)  # 10 s of data at 10x
    t.advance(0.5)
    assert clock.data_now() == pytest.approx(1_005_000)


def test_clock_pause_skips_the_paused_span() -> None:
    clock, t = make_clock(1.0)
    clock.start()
    t.advance(2.0)
    clock.pause()
    t.advance(100.0)
    assert clock.data_now() == pytest.approx(1_002_000)
    assert clock.seconds_until(1_003_000) == math.inf
    clock.resume()
    t.advance(1.0)
    assert clock.data_now() == pytest.approx(1_003_000)


def test_speed_zero_reaches_everything() -> None:
    clock, _ = make_clock(0.0)
    clock.start()
    assert clock.seconds_until(10**13) == 0


def test_rebased_times_start_now_and_follow_the_wall_clock() -> None:
    clock, t = make_clock(20.0)
    clock.start()
    now_ms = int(t.epoch * 1000)
    assert clock.serve_time(1_000_000) == now_ms
    # a trade 60 s of data later is served 3 s of wall time later at 20x
    assert clock.serve_time(1_060_000) == now_ms + 3000
    clock.pause()
    t.advance(50.0)
    clock.resume()
    # after a pause, times continue from the wall clock at resume (never backwards)
    assert clock.serve_time(1_060_000) >= now_ms + 50_000


def published(n: int) -> PublishedTrades:
    store = PublishedTrades()
    store.add_symbol("BTCUSDT")
    for i in range(n):  # ids 100.., two trades per ms-step of 10
        store.append("BTCUSDT", 100 + i, 5000 + (i // 2) * 10, str(100 + i).encode())
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query(limit=3), [107, 108, 109]),  # none of the three: the most recent
        (Query(from_id=103, limit=2), [103, 104]),
        (Query(from_id=0, limit=2), [100, 101]),
        (Query(from_id=200), []),
        (Query(start_time=5010, limit=3), [102, 103, 104]),
        (Query(start_time=5010, end_time=5020), [102, 103, 104, 105]),
        (Query(end_time=5010, limit=1), [103]),  # only endTime: the last ones up to it
        (Query(from_id=104, end_time=5020), [104, 105]),
        (Query(start_time=5030, end_time=5010), []),
    ],
)
def test_store_select(query: Query, expected: list[int]) -> None:
    assert [int(x) for x in published(10).select("BTCUSDT", query)] == expected


def test_store_rejects_ids_going_backwards() -> None:
    store = published(2)
    with pytest.raises(ValueError, match="after"):
        store.append("BTCUSDT", 101, 9999, b"x")


def test_tape_orders_and_deduplicates(real_tape: Tape) -> None:
    doubled = tape_of(list(reversed(real_tape.trades)) + list(real_tape.trades[:100]))
    assert doubled.trades == real_tape.trades
    assert doubled.duplicates == 100
    times = [t.time_ms for t in doubled.trades]
    assert times == sorted(times)


@given(seed=st.integers(0, 2**32), kind=st.sampled_from(KINDS))
def test_every_malformed_message_is_rejected_by_the_core_parser(seed: int, kind: str) -> None:
    event = {
        "e": "aggTrade", "E": 1617566591315, "s": "BTCUSDT", "a": 665076760,
        "p": "58001.03000000", "q": "0.08620500", "f": 745522877, "l": 745522877,
        "T": 1617566591314, "m": True, "M": True,
    }  # fmt: skip
    bad = make_malformed(event, random.Random(seed), kind)
    wire = bad.raw if bad.raw is not None else msgspec.json.encode(bad.structured)
    combined = msgspec.json.encode({"stream": "btcusdt@aggTrade", "data": bad.structured})
    for message in [wire] + ([combined] if bad.structured is not None else []):
        with pytest.raises(ParseError):
            parse_event(message)


def test_malformed_schedule_is_seeded() -> None:
    plan = schedule(1000, 5000, seed=7)
    assert sum(plan.values()) == 1000
    assert plan == schedule(1000, 5000, seed=7)
    assert plan != schedule(1000, 5000, seed=8)
    assert all(0 <= p < 5000 for p in plan)


def test_pause_at_speed_zero_stops_publication() -> None:
    clock, _ = make_clock(0.0)
    clock.start()
    clock.pause()
    assert clock.seconds_until(1_000_000) == math.inf
    clock.resume()
    assert clock.seconds_until(10**13) == 0


def test_store_history_is_bounded() -> None:
    store = PublishedTrades(history=10)
    store.add_symbol("BTCUSDT")
    for i in range(25):
        store.append("BTCUSDT", i, 1000 + i, str(i).encode())
    assert store.count == 25
    assert store.count_of("BTCUSDT") <= 10
    assert [int(x) for x in store.select("BTCUSDT", Query(limit=3))] == [22, 23, 24]
    assert int(store.select("BTCUSDT", Query(from_id=0, limit=1))[0]) > 10


def test_tape_refuses_ids_going_backwards_in_time(real_tape: Tape) -> None:
    first, second = [t for t in real_tape.trades if t.symbol == "BTCUSDT"][:2]
    assert first.time_ms < second.time_ms
    swapped = [
        msgspec.structs.replace(first, time_ms=second.time_ms),
        msgspec.structs.replace(second, time_ms=first.time_ms),
    ]
    with pytest.raises(SourceError, match="ids go backwards in time"):
        tape_of(swapped)


def test_pause_holds_a_trade_reached_but_not_yet_published() -> None:
    # the publisher passes the next trade it has not sent: data time freezes just below it
    clock, t = make_clock(1.0)
    clock.start()
    t.advance(0.5)
    clock.pause(before_ms=1_000_000)
    assert clock.seconds_until(1_000_000) == math.inf
    clock.resume()
    t.advance(0.001)
    assert clock.seconds_until(1_000_000) == 0
    # a later pending trade does not move the frozen time back
    clock.pause(before_ms=2_000_000)
    t.advance(10.0)
    assert clock.data_now() == pytest.approx(1_000_001)
    assert clock.seconds_until(1_000_002) == math.inf
