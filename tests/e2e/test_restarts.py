"""Producer restarts, end to end: a SIGTERM and a SIGKILL mid-stream, each followed by a start
a few seconds later while the market trades, then a SIGKILL and a start only after the market
went quiet. The rows the Lambda wrote must equal the independent tally of everything the
emulator published (duplicates across a restart are allowed in Kafka; the rows are exact)."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import StartPipeline
from .pipeline import metric_sum

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.mysql, pytest.mark.s3]


async def test_producer_sigterm_sigkill_and_a_start_after_the_market_went_quiet(
    start_pipeline: StartPipeline,
) -> None:
    env = {"TRADEPIPE_FEED_BACKOFF_MAX_SECONDS": "1"}  # the state file: in the pipeline's dir
    async with start_pipeline(speed=3, producer_env=env) as p:
        producer = p.producer
        await p.wait_fraction(0.2)
        assert await producer.stop() == 0  # SIGTERM: a deploy
        await asyncio.sleep(3)  # the market keeps trading
        await producer.start()
        await producer.wait_for("ready", 60)

        await p.wait_fraction(0.45)
        runs = len(producer.runs)
        producer.restart_seconds = 3.0  # systemd's RestartSec, a few seconds
        producer.kill()  # SIGKILL: an OOM kill or a crash
        await producer.wait_restarted(runs)
        await producer.wait_for("ready", 60)

        await p.wait_fraction(0.7)
        producer.restart = False
        producer.kill()
        status = await p.wait_published()  # the market goes quiet while nothing runs
        assert status["finished"]
        await asyncio.sleep(1)
        producer.restart = True
        await producer.start()
        await producer.wait_for("ready", 60)
        metrics_url = (await producer.wait_for("metrics_listening", 10))["url"]
        p.producer_metrics_url = metrics_url
        await p.settle()
        await p.assert_exact()
        metrics = await p.metrics(metrics_url)
        resumed = [e for e in producer.events("resumed") if e["symbol"] == "BTCUSDT"]
    exits = [r.exit_code for r in producer.runs]
    assert exits[:3] == [0, -9, -9], exits
    assert len(resumed) == 4 and all(e["source"] != "none" for e in resumed[1:])
    # the last start backfilled what was published while nothing ran
    assert metric_sum(metrics, "tradepipe_trades_backfilled_total") > 0
    assert metric_sum(metrics, "tradepipe_gap_unfilled_trades_total") == 0
