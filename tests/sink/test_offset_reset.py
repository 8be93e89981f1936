"""A committed offset deleted by retention while the sink was down: the reset is an alarm.

Real Kafka and the S3 server. Retention is made deterministic with the admin client's
``delete_records`` (it moves the log start offset at once, as retention would once it passed),
so nothing waits on a retention timer: run the sink over a first batch (a normal first start:
no committed offset, no alarm), stop it (everything committed), produce a second batch, delete
records past the committed offset, start the sink: the reset is counted with the exact number
skipped, logged at error level with the offsets, and ``/healthz`` answers 503 saying so; the
objects hold every record that was not deleted, once. A restart acknowledges it: healthy again,
no new reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from structlog.testing import capture_logs
from tests.sink.test_sink_service import (
    AWS_ENV,
    FlakyProxy,
    names,  # noqa: F401 (fixture)
    objects_under,
    recorded_trades,
    sink_settings,
    wait_for_lines,
)

from tradepipe.core import parse_event
from tradepipe.sink import Options, serve
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.service import Sink

pytestmark = [pytest.mark.kafka, pytest.mark.s3]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        keep = {"retention.ms": "-1", "retention.bytes": "-1"}  # 2021 timestamps: see produce
        resp = await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=keep)])
        assert not [err for _, err, *_ in resp.topic_errors if err], resp
    finally:
        await admin.close()


async def send(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for line in lines:
            trade = parse_event(line)
            key = trade.symbol.encode()
            futures.append(await producer.send(topic, line, key=key, timestamp_ms=trade.time_ms))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def delete_before(bootstrap: str, topic: str, offset: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(topic, 0)
        low = await admin.delete_records({tp: RecordsToDelete(offset)}, timeout_ms=30000)
        return int(low[tp])
    finally:
        await admin.close()


class Run:
    """A running sink: its state, its metrics URL (from the ``sink_started`` log)."""

    def __init__(self, metrics: SinkMetrics, logs: list[dict[str, Any]]) -> None:
        self.metrics, self.logs = metrics, logs
        self.sink: Sink | None = None

    @property
    def url(self) -> str:
        return str(next(e["metrics"] for e in self.logs if e["event"] == "sink_started"))

    async def healthz(self) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/healthz") as resp:
            return resp.status, await resp.text()

    def value(self, counter: str) -> float:
        return sum(
            float(s.value)
            for m in getattr(self.metrics, counter).collect()
            for s in m.samples
            if s.name.endswith("_total")
        )

    async def until(self, what: str, check: Callable[[], bool], wait_s: float = 60) -> None:
        deadline = time.monotonic() + wait_s
        # polling state the sink updates; there is no event to wait on
        while not check() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert check(), f"timed out waiting for {what}"

    def fetched(self, topic: str) -> bool:
        """A fetch response came back for the partition (so a reset would have been seen)."""
        return self.sink is not None and (
            self.sink.consumer.highwater(TopicPartition(topic, 0)) is not None
        )


@contextlib.asynccontextmanager
async def running(settings: Any) -> AsyncIterator[Run]:
    stop = asyncio.Event()
    with capture_logs() as logs:
        run = Run(SinkMetrics(), logs)
        options = Options(metrics=run.metrics, on_ready=lambda s: setattr(run, "sink", s))
        task = asyncio.create_task(serve(settings, stop, options))
        try:
            await run.until("the sink to start", lambda: run.sink is not None or task.done())
            assert not task.done(), task.result()
            yield run
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 60) == 0


def stored(objs: dict[str, bytes]) -> list[bytes]:
    return sorted(x for body in objs.values() for x in gzip.decompress(body).splitlines())


@pytest.mark.parametrize("deleted", ["part", "all"])
async def test_a_committed_offset_deleted_by_retention_is_counted_logged_and_unhealthy(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],  # noqa: F811
    deleted: str,
) -> None:
    topic, prefix = names["topic"], names["prefix"]
    lines = recorded_trades()
    first, second = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    await create_topic(kafka_bootstrap, topic)
    await send(kafka_bootstrap, topic, first)
    settings = sink_settings(kafka_bootstrap, s3_endpoint, s3_bucket, topic, names["group"], prefix)

    # 1. a first start (the group has no offset): reads from the beginning, no alarm
    async with running(settings) as run:
        objs = await wait_for_lines(s3_client_kwargs, s3_bucket, prefix, len(first))
        assert stored(objs) == sorted(first)
        assert await run.healthz() == (200, "ok\n")
        assert run.value("offset_resets") == 0
    # stopped: everything committed at len(first)

    # 2. while it is down: more records, and retention deletes past the committed offset
    await send(kafka_bootstrap, topic, second)
    skip = len(second) // 3 if deleted == "part" else len(second)
    assert await delete_before(kafka_bootstrap, topic, len(first) + skip) == len(first) + skip

    async with running(settings) as run:
        await run.until("the reset", lambda: run.value("offset_resets") > 0)
        objs = await wait_for_lines(s3_client_kwargs, s3_bucket, prefix, len(lines) - skip)
        status, text = await run.healthz()
        assert status == 503
        assert f"offset reset on {topic}/0" in text
        assert f"{skip} records skipped, resumed at {len(first) + skip}" in text
        assert "restart to acknowledge" in text
        assert run.value("offset_resets") == 1
        assert run.value("records_skipped") == skip
        assert run.metrics.offset_resets.labels("0")._value.get() == 1
        resets = [e for e in run.logs if e["event"] == "offset_reset"]
        assert len(resets) == 1
        assert resets[0]["log_level"] == "error"
        assert {k: resets[0][k] for k in ("topic", "partition", "committed_offset")} == {
            "topic": topic,
            "partition": 0,
            "committed_offset": len(first),
        }
        assert resets[0]["fetch_offset"] == len(first)
        assert resets[0]["new_offset"] == len(first) + skip
        assert resets[0]["skipped"] == skip
    # every record not deleted, once; the deleted ones are exactly what was counted
    objs = await objects_under(s3_client_kwargs, s3_bucket, prefix)
    assert stored(objs) == sorted(first + second[skip:])

    if deleted == "all":
        # nothing was read after the gap, so nothing committed past it: a restart finds the
        # committed offset still deleted and reports the same gap again, until records after
        # it are written and committed
        extra = second[:25]
        async with running(settings) as run:
            await run.until("the reset again", lambda: run.value("offset_resets") > 0)
            assert run.value("records_skipped") == skip
            assert (await run.healthz())[0] == 503
            await send(kafka_bootstrap, topic, extra)
            objs = await wait_for_lines(
                s3_client_kwargs, s3_bucket, prefix, len(first) + len(extra)
            )
        assert stored(objs) == sorted(first + extra)

    # 3. once a commit has passed the gap, the restart acknowledges it: healthy, no new reset
    async with running(settings) as run:
        await run.until("a fetch", lambda: run.fetched(topic))
        await run.until("healthy", lambda: run.sink is not None and run.sink.health().ok)
        assert await run.healthz() == (200, "ok\n")
        assert run.value("offset_resets") == 0
        assert run.value("records_skipped") == 0
        assert not [e for e in run.logs if e["event"] == "offset_reset"]


async def test_a_position_deleted_while_the_sink_is_paused_at_its_spool_bound_is_counted_exactly(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],  # noqa: F811
) -> None:
    topic, prefix = names["topic"], names["prefix"]
    recorded = recorded_trades()
    # The spool makes S3 no reason to stop reading; its bound is (a tiny one here, with S3
    # down). aiokafka buffers at most one fetch per partition (max_partition_fetch_bytes,
    # 1 MB) while paused; several MB more are certain to be fetched only after the deletion
    more = recorded * 8
    assert sum(map(len, more)) > 3_000_000
    lines = recorded + more
    await create_topic(kafka_bootstrap, topic)
    await send(kafka_bootstrap, topic, recorded)
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    async with FlakyProxy((host, int(port))) as proxy:
        settings = sink_settings(
            kafka_bootstrap, proxy.url, s3_bucket, topic, names["group"], prefix
        ).replace(sink={"spool_max_bytes": 200_000})
        async with running(settings) as run:
            # S3 is down, the spool reaches its bound: reading pauses
            await run.until("the pause", lambda: run.metrics.spool_paused._value.get() == 1)
            await run.until("a retried write", lambda: run.metrics.put_retries._value.get() >= 1)
            await send(kafka_bootstrap, topic, more)
            assert await delete_before(kafka_bootstrap, topic, len(lines)) == len(lines)
            proxy.down = False
            await run.until("the reset", lambda: run.value("offset_resets") > 0)
            (reset,) = [e for e in run.logs if e["event"] == "offset_reset"]
            fetched_to = reset["fetch_offset"]
            assert 0 < fetched_to < len(lines)
            assert reset["new_offset"] == len(lines)
            assert reset["skipped"] == len(lines) - fetched_to
            assert run.value("records_skipped") == len(lines) - fetched_to
            objs = await wait_for_lines(s3_client_kwargs, s3_bucket, prefix, fetched_to)
            status, text = await run.healthz()
            assert status == 503 and "deleted by retention" in text
    # what it had fetched is in S3 exactly once; the rest is exactly what it counted
    objs = await objects_under(s3_client_kwargs, s3_bucket, prefix)
    assert stored(objs) == sorted(lines[:fetched_to])
