"""The whole pipeline, no faults: emulator -> produce -> Kafka -> sink -> S3 -> notification ->
Lambda handler -> MariaDB, each daemon a separate process, judged against the independent tally.
The topic has 4 partitions (``kafka.partitions``) and the sink writes per-minute objects (the
default ``sink.layout``): BTCUSDT and DOTUSDT share partition 2, so its objects hold two symbols.
"""

from __future__ import annotations

import pytest

from tradepipe.core import parse_key

from .conftest import StartPipeline
from .layouts import PARTITIONS, PER_MINUTE, assert_once_each
from .pipeline import metric_sum

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.mysql, pytest.mark.s3]


async def test_clean_run_equals_the_tally(start_pipeline: StartPipeline) -> None:
    async with start_pipeline(speed=10, producer_env=PARTITIONS, sink_env=PER_MINUTE) as p:
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
    # per minute: one object per (partition, trade minute) with trades; partition 2's objects
    # hold both of its symbols
    assert_once_each(objects, p)
    partition_of = {key: parse_key(key).name.split("+")[1] for key in objects}
    assert set(partition_of.values()) == {"1", "2"}
    minutes = {(partition_of[k], parse_key(k).minute_ms) for k in objects}
    assert len(objects) == len(minutes)
    mixed = [k for k, trades in objects.items() if len({s for s, _, _ in trades}) > 1]
    assert mixed and all(partition_of[k] == "2" for k in mixed)
