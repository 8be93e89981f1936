"""The pure batcher: grouping by (group, trade minute) in both layouts, and identical objects
after a crash.

The crash property drives the batcher the way the service does (write a flush's objects, then
commit its checkpoint; commit ``before`` first for wall-clock flushes), stops it right after
the writes of any flush (before its commit), restarts a new batcher from the last committed
checkpoint over the same log, and requires the bucket to end up exactly as after a run
without the crash: same keys, same bytes, nothing extra -- in each layout, and across a
change of layout between the crash and the restart (nothing lost, nothing written twice).
"""

from __future__ import annotations

import gzip
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import unavailable

from tradepipe.core import MINUTE_MS, Layout, minute_of, parse_event, parse_key
from tradepipe.sink import Checkpoint, CheckpointError, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import MAX_METADATA

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
BASE_MS = 1_617_566_400_000  # 2021-04-04 20:00 UTC


@dataclass(frozen=True)
class Rec:
    symbol: str | None
    time_ms: int
    line: bytes


Log = list[Rec]
Ticks = dict[int, int]  # position (records fed so far) -> wall clock ms of an idle tick


def feed(b: PartitionBatcher, log: Log, start: int, ticks: Ticks) -> list[Flush]:
    out: list[Flush] = []
    for offset in range(start, len(log)):
        rec = log[offset]
        out.extend(b.add(offset, rec.symbol, rec.time_ms, rec.line))
        if offset + 1 in ticks:
            flush = b.tick(ticks[offset + 1])
            if flush is not None:
                out.append(flush)
    if b.replaying:
        out.extend(b.end_replay())
    end = b.tick(10**15)  # the end of the log, long after: everything is due by the clock
    if end is not None:
        out.append(end)
    return out


def clean_run(
    log: Log, grace: int, cap: int, ticks: Ticks, layout: Layout = Layout.PER_SYMBOL
) -> dict[str, bytes]:
    b = PartitionBatcher("t", 0, grace, cap, None, layout)
    return {x.key("p"): x.body() for f in feed(b, log, 0, ticks) for x in f.batches}


def crash_runs(
    log: Log,
    grace: int,
    cap: int,
    ticks: Ticks,
    layout: Layout = Layout.PER_SYMBOL,
    restart_layout: Layout | None = None,
) -> list[dict[str, bytes]]:
    """One bucket per crash point: after the writes of flush j, before its commit.

    The restarted sink (in ``restart_layout``, default the same) finds the whole log there:
    it is idle (ticks) only where the first run was idle *after* the crash, never in the part
    it re-reads quickly."""
    flushes: list[Flush] = []
    b = PartitionBatcher("t", 0, grace, cap, None, layout)
    # tick calls in order, with the number of flushes that existed when each was made
    tick_log: list[tuple[int, int]] = []
    for offset in range(len(log)):
        rec = log[offset]
        flushes.extend(b.add(offset, rec.symbol, rec.time_ms, rec.line))
        if offset + 1 in ticks:
            tick_log.append((offset + 1, len(flushes)))
            flush = b.tick(ticks[offset + 1])
            if flush is not None:
                flushes.append(flush)
    end = b.tick(10**15)
    if end is not None:
        flushes.append(end)
    buckets = []
    for j in range(len(flushes)):
        bucket: dict[str, bytes] = {}
        committed: Checkpoint | None = None
        for i, flush in enumerate(flushes[: j + 1]):
            if flush.before is not None:
                committed = flush.before
            bucket.update({x.key("p"): x.body() for x in flush.batches})
            if i < j:
                committed = flush.checkpoint
        # the commit travels as text: restart from what Kafka would hand back
        resume = (
            Checkpoint.from_metadata(committed.offset, committed.to_metadata())
            if committed
            else None
        )
        later = {p: ticks[p] for p, made in tick_log if made > j}
        again = PartitionBatcher("t", 0, grace, cap, resume, restart_layout or layout)
        start = resume.offset if resume else 0
        for flush in feed(again, log, start, later):
            bucket.update({x.key("p"): x.body() for x in flush.batches})
        buckets.append(bucket)
    return buckets


def lines_of(bucket: dict[str, bytes]) -> list[bytes]:
    return [line for body in bucket.values() for line in gzip.decompress(body).splitlines()]


@st.composite
def logs(draw: st.DrawFn) -> tuple[Log, int, int, Ticks]:
    symbols = draw(
        st.lists(
            st.sampled_from(["BTCUSDT", "ETHUSDT", "DOTUSDT"]), min_size=1, max_size=3, unique=True
        )
    )
    n = draw(st.integers(1, 60))
    t = BASE_MS + draw(st.integers(0, 59_999))
    log: Log = []
    for i in range(n):
        t += draw(st.integers(0, 20_000))
        late = draw(st.sampled_from([0, 0, 0, 0, 1_000, 30_000, 95_000]))
        if draw(st.integers(0, 30)) == 0:
            log.append(Rec(None, 0, b""))
            continue
        sym = draw(st.sampled_from(symbols))
        log.append(Rec(sym, t - late, f'{{"s":"{sym}","i":{i}}}'.encode()))
    grace = draw(st.sampled_from([0, 5_000, 30_000]))
    cap = draw(st.sampled_from([1, 3, 1_000]))
    positions = draw(st.lists(st.integers(1, n), max_size=4, unique=True))
    ticks = {p: draw(st.integers(BASE_MS, t + 200_000)) for p in positions}
    return log, grace, cap, ticks


@pytest.mark.parametrize("layout", list(Layout))
@settings(max_examples=300, deadline=None)
@given(case=logs())
def test_crash_between_put_and_commit_rewrites_the_same_objects(
    layout: Layout, case: tuple[Log, int, int, Ticks]
) -> None:
    log, grace, cap, ticks = case
    clean = clean_run(log, grace, cap, ticks, layout)
    # every good record is in exactly one object, in an object of its trade minute (and of its
    # symbol, per symbol); per minute, one object holds several symbols
    stored = sorted(lines_of(clean))
    assert stored == sorted(r.line for r in log if r.symbol is not None)
    for key, body in clean.items():
        parsed = parse_key(key)
        assert parsed.layout is layout
        for line in gzip.decompress(body).splitlines():
            rec = next(r for r in log if r.line == line)
            assert rec.symbol is not None and parsed.admits(rec.symbol, minute_of(rec.time_ms))
    for bucket in crash_runs(log, grace, cap, ticks, layout):
        assert bucket == clean


@pytest.mark.parametrize(("before", "after"), [tuple(Layout), tuple(reversed(Layout))])
@settings(max_examples=100, deadline=None)
@given(case=logs())
def test_a_layout_change_after_a_crash_loses_and_repeats_nothing(
    before: Layout, after: Layout, case: tuple[Log, int, int, Ticks]
) -> None:
    """Rule 8: restarted from a checkpoint of the other layout, every record is in the bucket
    -- the objects of the first run plus those of the second. Only records of the flush that
    was written and not committed are there twice (under a key of each layout; a key of one
    layout is never one of the other), as after a restart of Vector: the Lambda counts each
    trade once."""
    log, grace, cap, ticks = case
    want = sorted(r.line for r in log if r.symbol is not None)
    for bucket in crash_runs(log, grace, cap, ticks, before, after):
        lines = lines_of(bucket)
        assert set(lines) == set(want)
        assert max(Counter(lines).values(), default=1) <= 2
        for key, body in bucket.items():
            parsed = parse_key(key)
            for line in gzip.decompress(body).splitlines():
                rec = next(r for r in log if r.line == line)
                assert rec.symbol is not None
                assert parsed.admits(rec.symbol, minute_of(rec.time_ms))


def real_log() -> Log:
    names = [f"cryptofeed-BINANCE-ee25be.{s}usdt.aggTrade.ndjson" for s in ("btc", "eth", "dot")]
    if not all((DATA / n).exists() for n in names):
        unavailable(f"recorded trades under {DATA} are absent")
    raw = [line for n in names for line in (DATA / n).read_bytes().splitlines() if line]
    trades = sorted(((parse_event(x), x) for x in raw), key=lambda p: (p[0].time_ms, p[0].symbol))
    return [Rec(t.symbol, t.time_ms, x) for t, x in trades]


def test_real_trades_one_object_per_symbol_minute() -> None:
    log = real_log()
    flushes = feed(PartitionBatcher("aggtrades", 0, 5_000, 200_000), log, 0, {})
    batches = [b for f in flushes for b in f.batches]
    # 3 symbols x 2 minutes (20:03, 20:04): each minute complete in one object
    assert sorted((b.symbol, b.minute_ms) for b in batches) == sorted(
        {(r.symbol, minute_of(r.time_ms)) for r in log if r.symbol}
    )
    assert len(batches) == 6
    assert sum(len(b.lines) for b in batches) == len(log) == 1227 + 506 + 177
    # the 20:03 objects are due by record time (a trade at >= 20:04:05 arrived), not by clock
    assert flushes[0].reason == "due" and flushes[0].before is None
    assert {b.minute_ms for b in flushes[0].batches} == {BASE_MS + 3 * MINUTE_MS}
    # the last minute is flushed by the idle tick, whose checkpoint is committed first
    assert flushes[-1].reason == "idle" and flushes[-1].before is not None
    # the final commit holds nothing and points past the last record
    assert flushes[-1].checkpoint.offset == len(log) and flushes[-1].checkpoint.held == ()
    for b in batches:
        assert (
            parse_key(b.key("trades")).name
            == f"aggtrades+0+{b.first_offset:020d}+{b.last_offset:020d}.ndjson.gz"
        )
        assert gzip.decompress(b.body()).splitlines() == list(b.lines)


def test_same_records_give_the_same_bytes() -> None:
    log = real_log()
    one = clean_run(log, 5_000, 200_000, {})
    two = clean_run(log, 5_000, 200_000, {})
    assert one == two


def test_late_burst_stays_together_until_another_minute_arrives() -> None:
    t = BASE_MS + 10 * MINUTE_MS
    log = [Rec("BTCUSDT", t + 1_000, b"a"), Rec("BTCUSDT", t + 70_000, b"b")]
    log += [Rec("BTCUSDT", t + 2_000 + i, b"late%d" % i) for i in range(5)]  # a backfill
    log += [Rec("BTCUSDT", t + 71_000, b"c")]
    flushes = feed(PartitionBatcher("t", 0, 5_000, 1000), log, 0, {})
    minute = [b for f in flushes for b in f.batches if b.minute_ms == t]
    assert [b.lines for b in minute] == [(b"a",), tuple(b"late%d" % i for i in range(5))]


def test_size_cap_cuts_every_open_object() -> None:
    t = BASE_MS
    log = [Rec("BTCUSDT", t + i, b"b%d" % i) for i in range(3)] + [Rec("ETHUSDT", t + 5, b"e")]
    log += [Rec("BTCUSDT", t + 6, b"b3")]
    flushes = feed(PartitionBatcher("t", 0, 5_000, 3), log, 0, {})
    assert flushes[0].reason == "size_cap"
    assert flushes[0].checkpoint.held == () and flushes[0].checkpoint.offset == 3


@pytest.mark.parametrize(
    "text",
    ["", "v2|1|2|-|-|", "v1|x|2|-|-|", "v1|10|2|-|-|BTC:1:3", "v1|10|2|BTC|-|", "hello"],
)
def test_foreign_metadata_is_rejected(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_metadata(5, text)


def test_checkpoint_round_trip() -> None:
    cp = Checkpoint(
        5,
        12,
        BASE_MS + 7,
        (("BTCUSDT", BASE_MS, 5), ("ETHUSDT", BASE_MS, 9)),
        ("ETHUSDT", BASE_MS),
        None,
    )
    assert Checkpoint.from_metadata(5, cp.to_metadata()) == cp
    ticked = Checkpoint(12, 12, BASE_MS, (), None, BASE_MS + 99)
    assert Checkpoint.from_metadata(12, ticked.to_metadata()) == ticked


def test_real_trades_one_object_per_minute_across_symbols() -> None:
    log = real_log()
    flushes = feed(PartitionBatcher("aggtrades", 0, 5_000, 200_000, None, Layout.PER_MINUTE), log,
                   0, {})  # fmt: skip
    batches = [b for f in flushes for b in f.batches]
    # 2 minutes (20:03, 20:04), each one object holding all three symbols' trades
    assert [b.minute_ms for b in batches] == [BASE_MS + 3 * MINUTE_MS, BASE_MS + 4 * MINUTE_MS]
    assert sum(len(b.lines) for b in batches) == len(log) == 1227 + 506 + 177
    for b in batches:
        key = parse_key(b.key("trades"))
        assert key.symbol is None
        assert key.name == f"aggtrades+0+{b.first_offset:020d}+{b.last_offset:020d}.ndjson.gz"
        assert b.key("trades").startswith("trades/date=2021-04-04/hour=20/minute=0")
        symbols = {parse_event(line).symbol for line in b.lines}
        assert symbols == {"BTCUSDT", "ETHUSDT", "DOTUSDT"}


def test_per_minute_checkpoints_stay_small_with_thousands_of_symbols() -> None:
    """2,900 symbols trading: when a minute is due, the next one's first seconds are held.
    Per symbol that is one group per symbol, a checkpoint beyond the offset metadata's room,
    so the flush becomes a cut (everything written early, in more objects); per minute it is
    one group."""
    n = 2_900
    log = [Rec(f"S{i:04d}USDT", BASE_MS + i * 20, b"a%d" % i) for i in range(n)]  # minute 0
    log += [Rec(f"S{i:04d}USDT", BASE_MS + MINUTE_MS + i, b"b%d" % i) for i in range(n)]
    log += [Rec("S0000USDT", BASE_MS + MINUTE_MS + 6_000, b"c")]  # minute 0 is due (grace 5 s)
    reasons = {}
    for layout in Layout:
        b = PartitionBatcher("t", 0, 5_000, 200_000, None, layout)
        flushes = [f for i, r in enumerate(log) for f in b.add(i, r.symbol, r.time_ms, r.line)]
        reasons[layout] = [f.reason for f in flushes]
        assert all(len(f.checkpoint.to_metadata()) <= MAX_METADATA for f in flushes)
        if layout is Layout.PER_MINUTE:
            assert [len(x.lines) for x in flushes[0].batches] == [n]
            assert flushes[0].checkpoint.held == (("*", BASE_MS + MINUTE_MS, n),)
    assert reasons == {Layout.PER_MINUTE: ["due"], Layout.PER_SYMBOL: ["checkpoint_size"]}


@pytest.mark.parametrize("layout", list(Layout))
def test_two_sinks_cutting_one_partition_differently_never_share_a_key(layout: Layout) -> None:
    """After a rebalance in the spool's commit window, two sinks can cut the same partition
    from the same first offset at different points (one ran out of records and wrote by the
    clock, the other read on): their objects must have different keys, or the later put would
    replace the other's records (trades missing from S3). The same records still give the same
    key and bytes (the crash property)."""
    log = [
        Rec("BTCUSDT" if i % 3 else "ETHUSDT", BASE_MS + 20 * i, b'{"i":%d}' % i) for i in range(60)
    ]

    def cut(records: int) -> dict[str, bytes]:
        b = PartitionBatcher("aggtrades", 0, 5_000, 10_000, None, layout)
        flushes = feed(b, log[:records], 0, {})
        return {batch.key("trades"): batch.body() for f in flushes for batch in f.batches}

    short, long_ = cut(25), cut(60)  # one minute's objects, from offset 0, cut apart
    assert short and long_ and not set(short) & set(long_)
    assert cut(25) == short  # the same records: the same keys, the same bytes
    for key in short:
        name = parse_key(key).name
        assert name.startswith("aggtrades+0+") and name.count("+") == 3, name
