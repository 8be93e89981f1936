"""Every symbol of the exchange: ``feed.symbols = *`` over several connections against the
emulator's generated market (400 symbols, Zipf-spread rates), with drops on one connection only,
a symbol listed and one delisted mid-run; the independent tally is the emulator's record file
(every trade it published), compared with what Kafka holds. And the process-wide limit on
connection attempts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import msgspec
import pytest

from tradepipe.producer.backoff import AttemptLimiter
from tradepipe.producer.feed import Feed
from tradepipe.producer.intake import Intake
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.shards import Shards
from tradepipe.replay.protocol import stream_of
from tradepipe.replay.sample import market_models, market_tape

from .conftest import RunningProducer, StartEmulator, producer_settings, read_topic, settled

SYMBOLS, RATE, SPEED, PER_CONNECTION = 400, 500.0, 2.0, 134


def _metric(producer: object, name: str, **labels: str) -> float:
    value = producer.metrics.registry.get_sample_value(name, labels or None)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


def _all_live(feed: Feed) -> bool:
    """Every symbol of the shard delivering on one of its connections."""
    return set(feed.symbols) <= set().union(*(c.live for c in feed.open.values()))


def _tally(path: Path) -> dict[str, list[int]]:
    """Per symbol, the ids the emulator published (its record file), in order."""
    out: dict[str, list[int]] = {}
    for line in path.read_bytes().splitlines():
        event = msgspec.json.decode(line)
        out.setdefault(event["s"], []).append(event["a"])
    return out


def _compare(got: dict[str, list[int]], want: dict[str, list[int]]) -> list[str]:
    problems = []
    for symbol in sorted(set(got) | set(want)):
        g, w = got.get(symbol, []), want.get(symbol, [])
        missing, extra = sorted(set(w) - set(g)), sorted(set(g) - set(w))
        dups = len(g) - len(set(g))
        disorder = sum(1 for a, b in itertools.pairwise(g) if b <= a)
        if missing or extra or dups or disorder:
            problems.append(f"{symbol}: {len(missing)} missing {missing[:5]}, {len(extra)} "
                            f"unexpected, {dups} duplicated, {disorder} out of order")  # fmt: skip
    return problems


@pytest.mark.parametrize("seed", [16, 17])
async def test_400_symbols_on_3_connections_drops_on_one_listing_and_delisting(
    seed: int,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    tape = market_tape(SYMBOLS, rate=RATE, minutes=1, seed=seed)
    ranked = [m.symbol for m in market_models(SYMBOLS, RATE, seed=seed)]
    listed, delisted = ranked[6], ranked[7]  # busy enough to trade after the change
    record = tmp_path / "published.ndjson"
    async with start_emulator(
        tape,
        speed=SPEED,
        record_path=str(record),
        unlisted=(listed,),
        rest_weight_limit=100_000,
        start_now=True,
    ) as emu:
        # a fresh start streams each symbol from its first live trade: hold the market until
        # every subscription (by URL and by SUBSCRIBE) is confirmed, so the tally is all of it
        emu.pause()
        settings = producer_settings(
            emu, kafka_bootstrap, fresh_topic, tmp_path, symbols=["*"],
            max_streams_per_connection=PER_CONNECTION, symbols_refresh_seconds=1.0,
            backoff_max_seconds=0.5,
        )  # fmt: skip
        async with running_producer(settings) as producer:
            shards = producer.feed.feeds
            assert len(shards) == 3, {n: len(f.symbols) for n, f in shards.items()}
            # (a symbol of the Zipf tail may make no trade in the minute: not on the tape)
            assert sum(len(f.symbols) for f in shards.values()) == len(tape.symbols) - 1
            assert listed not in producer.feed.symbols
            dropped = list(shards[1].symbols)
            victim = dropped[0]  # every drop cuts shard 1's connection only
            async with asyncio.timeout(20):
                while not all(_all_live(f) for f in shards.values()):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            emu.resume()
            for fraction in (0.2, 0.4, 0.6):
                await asyncio.wait_for(emu.wait_published(int(len(tape.trades) * fraction)), 60)
                async with asyncio.timeout(20):  # shard 1 back (its subscriptions confirmed)
                    while not _all_live(shards[1]):  # noqa: ASYNC110 - no event for it
                        await asyncio.sleep(0.01)
                assert emu.drop_connections(stream=stream_of(victim)) == 1
                emu.refuse_connections(0.3)  # trades meanwhile exist only in REST
                if fraction == 0.4:
                    assert emu.list_symbol(listed) and emu.delist_symbol(delisted)
            async with asyncio.timeout(30):  # the refresh picks both changes up
                while listed not in producer.feed.symbols or delisted in producer.feed.symbols:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await settled(producer, emu, within=120)
            connections = [c.describe()["streams"] for c in emu.connections.values()]
            reconnects = {n: _metric(producer, "tradepipe_ws_shard_reconnects_total", shard=str(n))
                          for n in shards}  # fmt: skip
            counts = (_metric(producer, "tradepipe_symbols_listed_total"),
                      _metric(producer, "tradepipe_symbols_delisted_total"))  # fmt: skip
            backfilled = {s: _metric(producer, "tradepipe_trades_backfilled_total", symbol=s)
                          for s in ranked}  # fmt: skip
            unfilled = _metric(producer, "tradepipe_gap_unfilled_trades_total", symbol=victim)
        want = _tally(record)
        records = await read_topic(kafka_bootstrap, fresh_topic, sum(map(len, want.values())))
    assert producer.exit_status == 0  # type: ignore[attr-defined]
    got: dict[str, list[int]] = {}
    for key, value, _ in records:
        got.setdefault(key.decode(), []).append(msgspec.json.decode(value)["a"])
    assert not _compare(got, want), _compare(got, want)[:10]
    assert set(want) == set(tape.symbols) and len(tape.symbols) > 0.99 * SYMBOLS
    assert len(want[listed]) > 10 and len(want[delisted]) > 10
    # listed mid-run: its tape trades before the listing were never published (nor fetched)
    assert want[listed][0] > min(t.agg_id for t in tape.trades if t.symbol == listed)
    assert counts == (1.0, 1.0)
    streams = {s for conn in connections for s in conn}
    assert stream_of(delisted) not in streams and stream_of(listed) in streams
    assert reconnects[1] >= 3 and reconnects[2] == reconnects[3] == 0, reconnects
    # only shard 1's symbols needed REST (its drops); the others streamed every trade live
    others = set(ranked) - set(dropped) - {listed}
    assert not [s for s in others if backfilled[s]], [s for s in others if backfilled[s]][:5]
    assert sum(backfilled[s] for s in dropped) > 0
    assert unfilled == 0


async def test_connection_attempts_of_every_shard_share_one_limit(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    tape = market_tape(30, rate=100.0, minutes=1, seed=3)
    metrics = ProducerMetrics()
    outbox = Outbox(10_000)
    intake = Intake(tape.symbols, outbox, metrics, Quarantine(str(tmp_path / "q.ndjson")))
    async with start_emulator(tape, speed=1.0) as emu:
        emu.refuse_connections(60)
        shards = Shards(emu.ws_url, tape.symbols, 5, intake, metrics, backoff_cap=0.05,
                        limiter=AttemptLimiter(limit=8, window=300.0))  # fmt: skip
        assert len(shards.feeds) == 6
        task = asyncio.create_task(shards.run())
        try:
            async with asyncio.timeout(30):
                while emu.refused < 8:  # noqa: ASYNC110 - the emulator has no event
                    await asyncio.sleep(0.01)
            # 6 shards with a 50 ms backoff would try ~100 times a second without the limiter
            until = time.monotonic() + 2.0
            while time.monotonic() < until:
                await asyncio.sleep(0.1)
                assert emu.refused == 8
            assert not shards.connected and len(shards.not_connected()) == 6
        finally:
            shards.stop()
            async with asyncio.timeout(10):
                await task
