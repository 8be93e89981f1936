"""The whole pipeline, no faults: emulator -> produce -> Kafka -> sink -> S3 -> notification ->
Lambda handler -> MariaDB, each daemon a separate process, judged against the independent tally.
"""

from __future__ import annotations

import pytest

from .conftest import StartPipeline
from .pipeline import metric_sum

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.mysql, pytest.mark.s3]


async def test_clean_run_equals_the_tally(start_pipeline: StartPipeline) -> None:
    async with start_pipeline(speed=10) as p:
        await p.settle()
        rows = await p.assert_exact()
        objects = await p.objects()
        sink = await p.metrics(p.sink_metrics_url())
        stats = p.lam.stats
    assert {r[0] for r in rows} == {"BTCUSDT", "ETHUSDT", "DOTUSDT"}
    # every object arrived by notification and was handled once, nothing failed or repeated
    assert set(stats.done_at) == set(objects)
    assert stats.failures == 0 and stats.test_events == 1
    assert stats.invocations == len(objects)
    # the sink wrote each trade once: no object was rewritten with other contents
    lines = [t for trades in objects.values() for t in trades]
    assert len(lines) == len(set(lines))
    assert metric_sum(sink, "tradepipe_sink_malformed_records_total") == 0
    assert p.producer.restarts == 0 and p.sink.restarts == 0
