"""``tradepipe sink``: the shell around :mod:`.batcher` -- aiokafka in, object writer out.

Lifecycle (:func:`run`): signals set a flag -> start the metrics server, the object writer and
the consumer -> loop: read records, feed each partition's batcher, carry out its flushes ->
shutdown, in order: stop reading, write everything held and commit it (bounded by
``SHUTDOWN_SECONDS``), leave the group, close the writer and the metrics server.

Carrying out a flush: commit ``before`` if set, write all objects (concurrently, each retried
with backoff while the error is retryable, for at most ``sink.retry_timeout_seconds``), then
commit the checkpoint. Nothing is committed past a record whose object is not written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import stamina
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from tradepipe.config import Settings
from tradepipe.core import MINUTE_MS, ParseError, Reason, parse_event
from tradepipe.core.parse import MAX_LINE_BYTES
from tradepipe.observability import Health, MetricsServer, Notifier, watchdog_interval
from tradepipe.producer.quarantine import Quarantine
from tradepipe.sink.batcher import Batch, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import Checkpoint, CheckpointError
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer, retryable

log = structlog.get_logger("tradepipe.sink")

SHUTDOWN_SECONDS = 30.0
POLL_MS = 500
UNHEALTHY_PUT_SECONDS = 60.0


def record_line(value: bytes) -> bytes:
    """The NDJSON line for a (valid) Kafka value: the value itself, line breaks turned into
    spaces (JSON strings cannot hold a raw CR or LF, so each one is whitespace between tokens,
    and no UTF-8 sequence contains those bytes)."""
    return value.replace(b"\r", b" ").replace(b"\n", b" ")


class Sink:
    """State of a running sink: one batcher per assigned partition, and the I/O to flush them."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        writer: ObjectWriter,
        metrics: SinkMetrics,
    ) -> None:
        self.settings, self.consumer, self.writer, self.metrics = (
            settings,
            consumer,
            writer,
            metrics,
        )
        self.batchers: dict[TopicPartition, PartitionBatcher] = {}
        self.quarantine = Quarantine(
            settings.sink.quarantine_path, settings.feed.quarantine_max_bytes
        )
        self.prefix = settings.s3.prefix
        self.last_loop = time.monotonic()
        self.failing_since: float | None = None

    def new_batcher(self, tp: TopicPartition, resume: Checkpoint | None) -> None:
        s = self.settings.sink
        self.batchers[tp] = PartitionBatcher(
            tp.topic, tp.partition, int(s.grace_seconds * 1000), s.max_object_trades, resume
        )
        log.info(
            "partition_assigned",
            topic=tp.topic,
            partition=tp.partition,
            resume_offset=resume.offset if resume else None,
            replay_to=resume.position if resume else None,
        )

    # ------------------------------------------------------------------ records

    async def consume(self, records: Mapping[TopicPartition, list[object]]) -> None:
        for tp, messages in records.items():
            batcher = self.batchers.get(tp)
            if batcher is None:
                # Revoked while the fetch was in flight -- or assigned, with records fetched
                # before on_partitions_assigned (which awaits the committed checkpoint) made
                # the batcher: then read them again, or they are lost (found by tests/e2e).
                if messages and tp in self.consumer.assignment():
                    first: int = messages[0].offset  # type: ignore[attr-defined]
                    self.consumer.seek(tp, first)
                    log.warning("records_before_batcher", partition=tp.partition, offset=first)
                continue
            for msg in messages:
                await self.carry_out(tp, batcher.add(*self._decode(tp, msg)))
        self.metrics.held.set(sum(b.held_records for b in self.batchers.values()))

    def _decode(self, tp: TopicPartition, msg: object) -> tuple[int, str | None, int, bytes]:
        offset: int = msg.offset  # type: ignore[attr-defined]
        value: bytes | None = msg.value  # type: ignore[attr-defined]
        self.metrics.records.inc()
        try:
            if value is None:
                raise ParseError(Reason.EMPTY, "null record value (a tombstone?)")
            trade = parse_event(value, None, int(time.time() * 1000))
            return offset, trade.symbol, trade.time_ms, record_line(value)
        except ParseError as exc:
            # Skipped, never fatal: counted, logged with its offset, quarantined (capped).
            self.metrics.malformed.labels(exc.reason).inc()
            log.warning(
                "malformed_record",
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                reason=exc.reason,
                error=exc.message[:300],
            )
            raw = value[:MAX_LINE_BYTES] if value is not None else b""
            self.quarantine.add(exc.reason, f"{tp.topic}/{tp.partition}@{offset}: {exc}", raw)
            return offset, None, 0, b""

    async def idle(self, fetched: Iterable[TopicPartition]) -> None:
        """Wall-clock flushes for partitions that are caught up with their log end."""
        now_ms = int(time.time() * 1000)
        for tp, batcher in list(self.batchers.items()):
            if tp in fetched:
                continue
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            position = await self.consumer.position(tp)
            if position < end:
                continue
            if batcher.replaying:
                await self.carry_out(tp, batcher.end_replay())
                continue
            flush = batcher.tick(now_ms)
            if flush is not None:
                await self.carry_out(tp, [flush])

    async def drain(self) -> None:
        for tp, batcher in list(self.batchers.items()):
            flush = batcher.drain()
            if flush is not None:
                await self.carry_out(tp, [flush])

    # ------------------------------------------------------------------ flushing

    async def carry_out(self, tp: TopicPartition, flushes: list[Flush]) -> None:
        for flush in flushes:
            if flush.before is not None:
                await self.commit(tp, flush.before)
            started = time.time()
            async with asyncio.TaskGroup() as tg:
                for batch in flush.batches:
                    tg.create_task(self.put(batch, flush.reason))
            await self.commit(tp, flush.checkpoint)
            oldest = min(b.minute_ms for b in flush.batches) if flush.batches else None
            if oldest is not None:
                self.metrics.lag.set(max(0.0, started - (oldest + MINUTE_MS) / 1000))
            log.info(
                "flushed",
                topic=tp.topic,
                partition=tp.partition,
                reason=flush.reason,
                objects=len(flush.batches),
                trades=sum(len(b.lines) for b in flush.batches),
                committed=flush.checkpoint.offset,
                held=len(flush.checkpoint.held),
            )

    async def put(self, batch: Batch, reason: str) -> None:
        key, body = batch.key(self.prefix), batch.body()
        started = time.monotonic()
        attempt = 0
        async for attempt_ctx in stamina.retry_context(
            on=retryable,
            attempts=None,
            timeout=self.settings.sink.retry_timeout_seconds,
            wait_initial=0.2,
            wait_max=10.0,
        ):
            with attempt_ctx:
                attempt += 1
                if attempt > 1:
                    self.metrics.put_retries.inc()
                try:
                    await self.writer.put(key, body)
                except Exception as exc:
                    self.metrics.put_errors.labels(type(exc).__name__).inc()
                    self.failing_since = self.failing_since or time.monotonic()
                    log.warning("put_failed", key=key, attempt=attempt, error=str(exc))
                    raise
        self.failing_since = None
        self.metrics.put_seconds.observe(time.monotonic() - started)
        self.metrics.objects.labels(reason).inc()
        self.metrics.trades.inc(len(batch.lines))
        self.metrics.bytes.inc(len(body))

    async def commit(self, tp: TopicPartition, checkpoint: Checkpoint) -> None:
        meta = checkpoint.to_metadata()
        await self.consumer.commit({tp: OffsetAndMetadata(checkpoint.offset, meta)})
        self.metrics.commits.inc()

    def health(self) -> Health:
        now = time.monotonic()
        if now - self.last_loop > 30:
            return Health(False, f"consumer loop stalled for {now - self.last_loop:.0f}s")
        if self.failing_since is not None and now - self.failing_since > UNHEALTHY_PUT_SECONDS:
            return Health(False, f"object writes failing for {now - self.failing_since:.0f}s")
        if not self.batchers:
            return Health(False, "no partitions assigned")
        return Health(True)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """New partitions get a batcher resumed from the checkpoint committed with their offset."""

    def __init__(self, sink: Sink, admin: AIOKafkaAdminClient, group_id: str) -> None:
        self.sink, self.admin, self.group_id = sink, admin, group_id

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:  # uncommitted records are re-read by the next owner, same objects
            self.sink.batchers.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        committed = await self.admin.list_consumer_group_offsets(
            self.group_id, partitions=list(assigned)
        )
        for tp in assigned:
            resume = None
            meta = committed.get(tp)
            if meta is not None and meta.offset >= 0 and meta.metadata:
                try:
                    resume = Checkpoint.from_metadata(meta.offset, meta.metadata)
                except CheckpointError as exc:
                    log.warning("checkpoint_ignored", partition=tp.partition, error=str(exc))
            self.sink.new_batcher(tp, resume)


@asynccontextmanager
async def open_writer(settings: Settings) -> AsyncIterator[ObjectWriter]:
    if settings.sink.objects == "folder":
        yield LocalWriter(settings.sink.objects_dir)
        return
    async with S3Writer.open(
        settings.s3.bucket, settings.s3.endpoint_url, settings.s3.region
    ) as writer:
        yield writer


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    environ: Mapping[str, str] | None = None,
    metrics: SinkMetrics | None = None,
    writer: ObjectWriter | None = None,
) -> int:
    """Run the sink until ``stop`` is set (or SIGTERM/SIGINT); returns the exit status.

    ``writer`` replaces the one the settings name (``tradepipe run`` passes a writer that also
    hands each object to its in-process loader)."""
    stop = stop or asyncio.Event()
    environ = environ or {}
    metrics = metrics or SinkMetrics()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    notifier = Notifier(environ.get("NOTIFY_SOCKET"))
    kafka = settings.kafka
    async with AsyncExitStack() as stack:
        if writer is None:
            writer = await stack.enter_async_context(open_writer(settings))
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        stack.push_async_callback(admin.close)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        sink = Sink(settings, consumer, writer, metrics)
        consumer.subscribe([kafka.topic], listener=_Rebalance(sink, admin, kafka.group_id))
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        server = MetricsServer(metrics.registry, sink.health, settings.sink.metrics_listen)
        await stack.enter_async_context(server)
        log.info(
            "sink_started",
            topic=kafka.topic,
            group=kafka.group_id,
            metrics=server.url,
            target=settings.sink.objects_dir
            if settings.sink.objects == "folder"
            else f"s3://{settings.s3.bucket}/{settings.s3.prefix}",
        )
        notifier.ready(status=f"consuming {kafka.topic}")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_consume(sink, stop))
            interval = watchdog_interval(environ)
            if interval is not None:
                tg.create_task(_watchdog(notifier, interval, stop))
        # Shutdown, in order: reading has stopped; write and commit what is held; the exit
        # stack then leaves the group, closes the admin client, the writer and the server.
        notifier.stopping(status="writing held objects")
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                await sink.drain()
        except TimeoutError:
            log.error("shutdown_drain_timeout", seconds=SHUTDOWN_SECONDS)
            return 1
        log.info("sink_stopped")
    return 0


async def _consume(sink: Sink, stop: asyncio.Event) -> None:
    while not stop.is_set():
        records = await sink.consumer.getmany(timeout_ms=POLL_MS)
        sink.last_loop = time.monotonic()
        await sink.consume(records)
        await sink.idle(set(records))


async def _watchdog(notifier: Notifier, interval: float, stop: asyncio.Event) -> None:
    # The keep-alive proves the event loop runs; an S3 outage is retried (and reported on
    # /healthz), not turned into a restart loop by the watchdog.
    while not stop.is_set():
        notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
