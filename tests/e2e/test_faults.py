"""Faults, one per test, each ending in exact equality with the independent tally.

The emulator replays the real recorded BTCUSDT/ETHUSDT/DOTUSDT trades (91 s of market time,
1,910 aggTrades) with rebased times; every fault lands while trades are flowing.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from tests.conftest import StackControl

from .conftest import StartPipeline
from .invoker import object_keys
from .pipeline import metric_sum

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.mysql, pytest.mark.s3]

# the reconnect backoff is the producer's own (tested there); capped at 1 s here so that 20
# drops fit in the data's span
FAST_RECONNECT = {"TRADEPIPE_FEED_BACKOFF_MAX_SECONDS": "1"}


async def test_twenty_websocket_drops(start_pipeline: StartPipeline) -> None:
    rng = random.Random(20)
    async with start_pipeline(speed=3, producer_env=FAST_RECONNECT) as p:
        drops = 0
        while drops < 20:
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            status = await p.emulator()
            assert not status["finished"], f"the tape ended after {drops} drops"
            drops += (await p.emulator("drop"))["dropped"]  # 0 while reconnecting: retry
        await p.settle()
        await p.assert_exact()
        metrics = await p.metrics(p.producer_metrics_url)
    assert metric_sum(metrics, "tradepipe_ws_reconnects_total") >= 20
    assert metric_sum(metrics, "tradepipe_trades_backfilled_total") > 0, (
        "trades published while disconnected exist only in REST: some must have been backfilled"
    )
    assert p.producer.restarts == 0


async def test_kafka_killed_and_restarted(
    start_pipeline: StartPipeline, stack_control: StackControl
) -> None:
    async with start_pipeline(speed=4) as p:
        await p.wait_fraction(0.25)
        await stack_control.stop("kafka", kill=True)
        status = await p.emulator()
        assert not status["finished"], "the broker should die while trades are flowing"
        await asyncio.sleep(3)  # trades keep coming: the producer must hold them
        await stack_control.start("kafka")
        await p.settle()
        await p.assert_exact()
        metrics = await p.metrics(p.producer_metrics_url)
    # trades were held through the outage: some took longer than a second to be acknowledged
    within_1s = metrics[("tradepipe_trade_to_kafka_seconds_bucket", (("le", "1.0"),))]
    total = metrics[("tradepipe_trade_to_kafka_seconds_count", ())]
    assert within_1s < total, "no trade waited for the broker: the outage missed the stream"
    assert p.producer.restarts == 0, "the producer must ride out a broker outage"


async def test_sink_killed_at_random_moments(start_pipeline: StartPipeline) -> None:
    rng = random.Random(8)
    # small objects: many puts and commits, so kills land between a put and its commit too
    async with start_pipeline(speed=4, max_object_trades=40) as p:
        for _ in range(6):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            runs = len(p.sink.runs)
            p.sink.kill()
            await p.sink.wait_restarted(runs)  # systemd's Restart=on-failure
            await p.sink.wait_for("sink_started", 60)
        await p.settle()
        await p.assert_exact()
        objects = await p.objects()
    assert p.sink.restarts == 6 and all(r.exit_code == -9 for r in p.sink.runs[:-1])
    # re-delivered records rewrote the same keys: no trade is in two objects
    lines = [t for trades in objects.values() for t in trades]
    assert len(lines) == len(set(lines)), "a crash duplicated trades across objects"


async def test_handler_invoked_twice_and_out_of_order(start_pipeline: StartPipeline) -> None:
    rng = random.Random(5)
    # small objects: each minute spread over several objects, so order and repeats matter
    async with start_pipeline(speed=10, max_object_trades=60) as p:
        p.lam.pause()
        await p.wait_published()
        await p.wait_in_s3(len(p.record.read_text().splitlines()))
        events = await p.lam.take_all()
        assert len(events) >= 20, f"only {len(events)} objects"
        twice = rng.sample(events, len(events) // 3)
        order = events + twice
        rng.shuffle(order)
        keys = [object_keys(e)[0] for e in order]
        assert sum(a > b for a, b in itertools.pairwise(keys)) > len(keys) // 4
        errors = await p.lam.invoke(order)
        assert errors == [None] * len(order)
        await p.assert_exact()
    assert p.lam.stats.invocations == len(events) + len(twice)


async def test_mariadb_stopped_during_invocations(
    start_pipeline: StartPipeline, stack_control: StackControl
) -> None:
    async with start_pipeline(speed=10, max_object_trades=40, retry_delays=(3, 6)) as p:
        p.lam.pause()
        await p.wait_published()
        await p.wait_in_s3(len(p.record.read_text().splitlines()))
        # a batch of events is waiting: deliver a few (the environments are warm, connected),
        # then take the database away under the rest
        p.lam.resume()
        while p.lam.stats.invocations < 4:  # noqa: ASYNC110 -- counted in worker threads
            await asyncio.sleep(0.02)
        p.lam.pause()
        await stack_control.stop("mysql")
        p.lam.resume()
        failed = p.lam.stats.failures
        for _ in range(600):
            if p.lam.stats.failures >= failed + 3:
                break
            await asyncio.sleep(0.1)
        assert p.lam.stats.failures >= failed + 3, "no invocation failed while MariaDB was down"
        await stack_control.start("mysql")
        await p.lam.idle(seconds=180)
        # events whose retries ran out while it was down: the operator replays them
        redriven = await p.lam.redrive()
        await p.lam.idle(seconds=120)
        await p.assert_exact()
        stats = p.lam.stats
    assert stats.retried > 0
    assert stats.to_failure_destination == redriven


async def test_thousand_malformed_messages_quarantined(start_pipeline: StartPipeline) -> None:
    async with start_pipeline(speed=10, malformed=1000, seed=7) as p:
        await p.settle()
        await p.assert_exact()
        status = await p.emulator()
        producer = await p.metrics(p.producer_metrics_url)
        sink = await p.metrics(p.sink_metrics_url())
    assert status["malformed_sent"] == 1000
    assert metric_sum(producer, "tradepipe_malformed_messages_total") == 1000
    quarantined = p.quarantine.read_text().splitlines()
    assert len(quarantined) == 1000
    # none reached Kafka: the sink saw only trades
    assert metric_sum(sink, "tradepipe_sink_malformed_records_total") == 0
