"""``tradepipe sink``: the shell around :mod:`.batcher` -- a consumer in, an object writer out.

:func:`serve` (``tradepipe sink``, and ``tradepipe run`` in local mode) = start-up -> the consume
loop (and the watchdog) in one ``TaskGroup`` -> ordered shutdown once reading has ended. It
handles no signals itself: the command installs handlers that only set ``stop``
(:mod:`tradepipe.commands.signals`), tests and local mode pass their own event. What the
environment decides (not the config file) comes in :class:`Options`: the systemd notifier and
watchdog, an object writer, a record :class:`~.consumer.Source`, the metrics registry.

Start-up: open the object writer (``sink.local_dir`` -> a folder, else S3; or
``Options.writer``), start the metrics server (``sink.metrics_listen``), join: Kafka's consumer
group by default (:class:`~.kafka.KafkaSource`), or ``Options.source`` (local mode's
in-process broker); ``READY=1``.

The loop: read records, feed each partition's batcher, carry out its flushes; partitions caught
up with their log end get wall-clock flushes. Reading ends when the source says so
(:meth:`~.consumer.Source.reading`: Kafka when ``stop`` is set; the in-process broker once it is
closed and read to the end).

Shutdown, in order (bounded by ``Options.shutdown_seconds``): ``STOPPING=1``; reading has
stopped; write everything held and commit it; leave the group (close the consumer), stop the
metrics server, close the writer. Anything still held unwritten then (the time ran out) is
logged at error level per partition with its offsets (``shutdown_left_behind``, then
``stopped_with_leftovers``) and the exit status is 1; 0 means nothing was left. (With Kafka,
records held are not lost: the committed offsets make the next run read them again.)

Carrying out a flush: commit ``before`` if set, write all objects (concurrently, each retried
with backoff while the error is retryable, for at most ``sink.retry_timeout_seconds``), then
commit the checkpoint. Nothing is committed past a record whose object is not written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import stamina
import structlog
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tradepipe.config import Settings
from tradepipe.core import MINUTE_MS, ParseError, Reason, parse_event
from tradepipe.core.parse import MAX_LINE_BYTES
from tradepipe.observability import Health, MetricsServer, Notifier
from tradepipe.producer.quarantine import Quarantine
from tradepipe.sink.batcher import Batch, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import Checkpoint
from tradepipe.sink.consumer import Consumer, Message, Source
from tradepipe.sink.kafka import KafkaSource
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer, retryable

log = structlog.get_logger("tradepipe.sink")

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
        consumer: Consumer,
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
        self.unwritten: dict[TopicPartition, Flush] = {}  # the shutdown's flush being written
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

    async def consume(self, records: Mapping[TopicPartition, Sequence[Message]]) -> None:
        for tp, messages in records.items():
            batcher = self.batchers.get(tp)
            if batcher is None:
                # Revoked while the fetch was in flight -- or assigned, with records fetched
                # before on_partitions_assigned (which awaits the committed checkpoint) made
                # the batcher: then read them again, or they are lost (found by tests/e2e).
                if messages and tp in self.consumer.assignment():
                    first = messages[0].offset
                    self.consumer.seek(tp, first)
                    log.warning("records_before_batcher", partition=tp.partition, offset=first)
                continue
            for msg in messages:
                await self.carry_out(tp, batcher.add(*self._decode(tp, msg)))
        self.metrics.held.set(sum(b.held_records for b in self.batchers.values()))

    def _decode(self, tp: TopicPartition, msg: Message) -> tuple[int, str | None, int, bytes]:
        offset, value = msg.offset, msg.value
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
        """Write and commit everything held (a cut per partition)."""
        for tp, batcher in list(self.batchers.items()):
            flush = batcher.drain()
            if flush is not None:
                self.unwritten[tp] = flush
                await self.carry_out(tp, [flush])
                del self.unwritten[tp]

    def leftovers(self) -> list[dict[str, object]]:
        """Per partition, the records held and not written (with their offsets): a flush cut
        off by the shutdown's time limit, or a partition the drain did not reach. Partitions
        still in their replay window are not counted: what they hold is the committed state."""
        out: list[dict[str, object]] = []
        for tp, batcher in sorted(self.batchers.items()):
            item: dict[str, object] = {"topic": tp.topic, "partition": tp.partition}
            if (flush := self.unwritten.get(tp)) is not None and flush.batches:
                first = min(b.first_offset for b in flush.batches)
                last = max(b.last_offset for b in flush.batches)
                held = sum(len(b.lines) for b in flush.batches)
                out.append({**item, "held": held, "held_offsets": f"{first}-{last}"})
            elif not batcher.replaying and (span := batcher.held_offsets()) is not None:
                held_offsets = f"{span[0]}-{span[1] - 1}"
                out.append({**item, "held": batcher.held_records, "held_offsets": held_offsets})
        return out

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


@asynccontextmanager
async def open_writer(settings: Settings, folder: str) -> AsyncIterator[ObjectWriter]:
    """The object writer: files under ``folder`` when it is set, else S3 (``settings.s3``)."""
    if folder:
        yield LocalWriter(folder)
        return
    s3 = settings.s3
    async with S3Writer.open(s3.bucket, s3.endpoint_url, s3.region) as writer:
        yield writer


@dataclass
class Options:
    """What the environment (not the config file) decides: systemd, tests, local mode."""

    notifier: Notifier = field(default_factory=lambda: Notifier(None))
    watchdog_seconds: float | None = None  # from $WATCHDOG_USEC
    writer: ObjectWriter | None = None  # default: open_writer(settings, sink.local_dir)
    source: Source | None = None  # default: the Kafka consumer group (KafkaSource)
    metrics: SinkMetrics | None = None
    serve_metrics: bool = True
    shutdown_seconds: float = 30.0
    on_ready: Callable[[Sink], None] | None = None


async def serve(settings: Settings, stop: asyncio.Event, options: Options | None = None) -> int:
    """Run the sink until reading ends (``stop``, module docstring); returns the exit status
    (0 after a clean stop with nothing left unwritten)."""
    options = options or Options()
    metrics = options.metrics or SinkMetrics()
    kafka = settings.kafka
    async with AsyncExitStack() as stack:
        writer = options.writer
        target = "the caller's writer"
        if writer is None:
            writer = await stack.enter_async_context(open_writer(settings, settings.sink.local_dir))
            target = settings.sink.local_dir or f"s3://{settings.s3.bucket}/{settings.s3.prefix}"
        source = options.source if options.source is not None else KafkaSource(settings)
        sink = Sink(settings, source.consumer, writer, metrics)
        server = MetricsServer(metrics.registry, sink.health, settings.sink.metrics_listen)
        if options.serve_metrics:
            await stack.enter_async_context(server)
        stack.push_async_callback(source.stop)  # leave the group before the rest closes
        await source.start(sink)
        log.info(
            "sink_started",
            topic=kafka.topic,
            group=kafka.group_id,
            metrics=server.url if options.serve_metrics else None,
            target=target,
        )
        options.notifier.ready(status=f"consuming {kafka.topic}")
        if options.on_ready is not None:
            options.on_ready(sink)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_consume(sink, source, stop), name="consume")
            if options.watchdog_seconds is not None:
                watchdog = _watchdog(options.notifier, options.watchdog_seconds, stop)
                tg.create_task(watchdog, name="watchdog")
        status = await _shutdown(sink, options)
    if status == 0:
        log.info("sink_stopped")
    return status


async def _consume(sink: Sink, source: Source, stop: asyncio.Event) -> None:
    while source.reading(stop.is_set()):
        records = await sink.consumer.getmany(timeout_ms=POLL_MS)
        sink.last_loop = time.monotonic()
        await sink.consume(records)
        await sink.idle(set(records))


async def _shutdown(sink: Sink, options: Options) -> int:
    """Reading has ended: write and commit what is held (bounded); the exit status."""
    options.notifier.stopping(status="writing held objects")
    try:
        async with asyncio.timeout(options.shutdown_seconds):
            await sink.drain()
    except TimeoutError:
        log.error("shutdown_drain_timeout", seconds=options.shutdown_seconds)
    left = sink.leftovers()
    for item in left:
        log.error("shutdown_left_behind", **item)
    if left:
        log.error(
            "stopped_with_leftovers",
            held=sum(int(str(i["held"])) for i in left),
            partitions=[f"{i['topic']}/{i['partition']}" for i in left],
        )
        return 1
    return 0


async def _watchdog(notifier: Notifier, interval: float, stop: asyncio.Event) -> None:
    # The keep-alive proves the event loop runs; an S3 outage is retried (and reported on
    # /healthz), not turned into a restart loop by the watchdog.
    while not stop.is_set():
        notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
