"""An S3 outage three times as long as the topic's retention, end to end (#14): the built-in
sink's spool keeps what Kafka deletes meanwhile.

The topic keeps records 15 s (``retention.ms``; 1 s segments; the test broker checks every
5 s). The sink reaches S3 through a loopback proxy the test cuts for 45 s while the emulator
keeps publishing; before S3 comes back, Kafka must have deleted records (its log start moved),
so without the spool they would be gone. After S3 returns and the tape ends, the sink is
stopped (SIGTERM: it writes what it holds, exit 0): S3 then holds every published trade exactly
once, no offset was reset, and the rows the Lambda handler wrote equal the independent tally.
The second variant SIGKILLs the sink in the middle of the outage and starts it again (still
cut off): it resumes from the spool on disk.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .conftest import StartPipeline
from .pipeline import Pipeline, metric_sum, tally_ids, wait_until
from .proxy import CutProxy

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.mysql, pytest.mark.s3]

RETENTION_S = 15
OUTAGE_S = 3 * RETENTION_S
SHORT_TOPIC = {
    "TRADEPIPE_KAFKA_RETENTION_MS": str(RETENTION_S * 1000),
    "TRADEPIPE_KAFKA_SEGMENT_MS": "1000",
}


async def log_starts(p: Pipeline) -> dict[int, int]:
    """Each partition's first offset still in Kafka (moved by retention)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=p.kafka)
    await admin.start()
    try:
        described = await admin.describe_topics([p.topic])
        partitions = [TopicPartition(p.topic, d["partition"]) for d in described[0]["partitions"]]
    finally:
        await admin.close()
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=p.kafka, group_id=None)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: off for tp, off in starts.items()}


async def sink_metric(p: Pipeline, name: str) -> float:
    return metric_sum(await p.metrics(p.sink_metrics_url()), name)


@pytest.mark.parametrize("kill", [False, True], ids=["outage", "outage-and-sigkill"])
async def test_an_s3_outage_three_times_the_retention_loses_nothing(
    start_pipeline: StartPipeline, s3_client_kwargs: dict[str, str], kill: bool
) -> None:
    host, port = s3_client_kwargs["endpoint_url"].removeprefix("http://").rsplit(":", 1)
    async with CutProxy((host, int(port))) as proxy:
        sink_env = {"TRADEPIPE_S3_ENDPOINT_URL": proxy.url}
        async with start_pipeline(speed=1.5, producer_env=SHORT_TOPIC, sink_env=sink_env) as p:
            await p.wait_fraction(0.05)
            proxy.down()
            cut_at = time.monotonic()
            before = await p.objects()  # a minute may have ended before the cut
            status = await p.emulator()
            assert not status["finished"], "the outage must start while trades flow"
            if kill:
                await asyncio.sleep(OUTAGE_S / 2)  # the middle of the outage
                assert await sink_metric(p, "tradepipe_sink_spool_records") > 0
                runs = len(p.sink.runs)
                p.sink.kill()
                await p.sink.wait_restarted(runs)
                await p.sink.wait_for("sink_started", 60)
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))

            async def deleted() -> bool:
                return any(v > 0 for v in (await log_starts(p)).values())

            # Kafka has deleted records the sink read during the outage
            await wait_until(deleted, 30, "retention to delete records")
            assert await p.objects() == before, "nothing may reach S3 while the path is cut"

            async def put_failed() -> bool:
                return await sink_metric(p, "tradepipe_sink_put_errors_total") > 0

            # a minute closed during the outage and its put failed: on a loaded machine the
            # first failure can come after OUTAGE_S (botocore retries inside one put first),
            # so wait for it with the path still cut (CI saw none at 45 s once)
            await wait_until(put_failed, 120, "a put to fail while S3 is cut")
            assert await p.objects() == before, "nothing may reach S3 while the path is cut"
            proxy.up()
            status = await p.wait_published(180)
            assert status["finished"]
            produced = await p.producer_metric("tradepipe_trades_produced_total")
            assert produced == len(tally_ids(p.record))

            await wait_until(lambda: _caught_up(p), 60, "the sink to spool every record")
            assert await p.sink.stop() == 0  # writes what it holds, nothing left in memory
            kept = p.sink.events("spool_kept")
            assert kept == [], kept
            objects = await p.objects()
            ids = [(s, a) for trades in objects.values() for s, a, _ in trades]
            assert len(ids) == len(set(ids)), "a trade is in S3 twice"
            assert set(ids) == tally_ids(p.record), await p.missing_in_s3()
            await p.lam.idle(seconds=120)
            await p.assert_exact()
            assert p.sink.events("offset_reset") == []
            assert [r.exit_code for r in p.sink.runs] == ([-9, 0] if kill else [0])
            if kill:
                resumed = p.sink.events("spool_resumed", p.sink.runs[1].log_offset)
                assert resumed and resumed[0]["records"] > 0, p.sink.tail()
        assert proxy.refused > 0


async def _caught_up(p: Pipeline) -> bool:
    """The sink's committed offsets reach the log end of every partition."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=p.kafka, group_id=p.group)
    await consumer.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=p.kafka)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(p.group)
        finally:
            await admin.close()
        ends = await consumer.end_offsets(list(committed))
    finally:
        await consumer.stop()
    return bool(committed) and all(committed[tp].offset >= ends[tp] for tp in committed)
