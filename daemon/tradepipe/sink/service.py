"""``tradepipe sink``: the shell around :mod:`.batcher` -- a consumer in, an object writer out.

:func:`serve` (``tradepipe sink``, and ``tradepipe run`` in local mode) = start-up -> the consume
loop (and the watchdog) in one ``TaskGroup`` -> ordered shutdown once reading has ended. It
handles no signals itself: the command installs handlers that only set ``stop``
(:mod:`tradepipe.commands.signals`), tests and local mode pass their own event. What the
environment decides (not the config file) comes in :class:`Options`: the systemd notifier and
watchdog, an object writer, a record :class:`~.consumer.Source`, the metrics registry.

Start-up: open the object writer (``sink.objects``: a folder, ``sink.objects_dir``, or S3; or
``Options.writer``), start the metrics server (``sink.metrics_listen``), join: Kafka's consumer
group by default (:class:`~.kafka.KafkaSource`), or ``Options.source`` (local mode's
in-process broker); ``READY=1``.

The loop: read records, feed each partition's batcher, carry out its flushes; partitions caught
up with their log end get wall-clock flushes. Reading ends when the source says so
(:meth:`~.consumer.Source.reading`: Kafka when ``stop`` is set; the in-process broker once it is
closed and read to the end).

Shutdown, in order, all of it within ``Options.shutdown_seconds`` of the stop (30 s, inside
systemd's ``TimeoutStopSec``): ``STOPPING=1``; reading ends (the flush being carried out, S3
retried, gets the time left, then is cut off); write everything held and commit it (a
partition whose flush was cut off is left alone: committing past it would skip records never
written); leave the group (close the consumer), stop the metrics server, close the writer.
Anything left unwritten then is logged at error level per partition with its offsets
(``shutdown_left_behind``: records held, and with the in-process broker records never read;
then ``stopped_with_leftovers``) and the exit status is 1; 0 means nothing was left. (With
Kafka, records held are not lost: the committed offsets make the next run read them again.)

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
from tradepipe.core import MINUTE_MS, Layout, ParseError, Reason, parse_event
from tradepipe.core.parse import MAX_LINE_BYTES
from tradepipe.observability import Health, MetricsServer, Notifier
from tradepipe.producer.quarantine import Quarantine
from tradepipe.sink.batcher import Batch, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import Checkpoint
from tradepipe.sink.consumer import Consumer, Message, Source
from tradepipe.sink.kafka import KafkaSource
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer, retryable
from tradepipe.sink.resets import OffsetReset

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
        # flushes taken from a batcher and not yet written and committed
        self.unwritten: list[tuple[TopicPartition, Flush]] = []
        # offsets (first, last) of the records fetched and being fed to the batchers
        self.feeding: dict[TopicPartition, tuple[int, int]] = {}
        self.quarantine = Quarantine(
            settings.sink.quarantine_path, settings.feed.quarantine_max_bytes
        )
        self.prefix = settings.s3.prefix
        self.last_loop = time.monotonic()
        self.failing_since: float | None = None
        # offset resets seen (sink/resets.py): /healthz is unhealthy until a restart
        self.resets: list[OffsetReset] = []

    def new_batcher(self, tp: TopicPartition, resume: Checkpoint | None) -> None:
        s = self.settings.sink
        self.batchers[tp] = PartitionBatcher(
            tp.topic, tp.partition, int(s.grace_seconds * 1000), s.max_object_trades, resume,
            Layout(s.layout),
        )  # fmt: skip
        log.info(
            "partition_assigned",
            topic=tp.topic,
            partition=tp.partition,
            resume_offset=resume.offset if resume else None,
            replay_to=resume.position if resume else None,
            layout=s.layout,
        )

    # ------------------------------------------------------------------ records

    async def consume(self, records: Mapping[TopicPartition, Sequence[Message]]) -> None:
        self.feeding = {
            tp: (m[0].offset, m[-1].offset)
            for tp, m in records.items()
            if m and tp in self.batchers
        }
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
        self.feeding = {}
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
        """Write and commit everything held (a cut per partition). A partition whose flush was
        cut off (the shutdown's time limit) is left as it is: a later commit would pass over
        records of objects never written."""
        cut_off = {tp for tp, _ in self.unwritten}
        for tp, batcher in list(self.batchers.items()):
            if tp in cut_off:
                continue
            flush = batcher.drain()
            if flush is not None:
                await self.carry_out(tp, [flush])

    def leftovers(self) -> list[dict[str, object]]:
        """Per partition, the records held and not written, and the offsets they lie between:
        flushes cut off by the shutdown's time limit, objects still open, records fetched and
        not yet fed to the batcher when the loop was cut off. Partitions in their replay window
        do not count what they hold: that is the state already committed."""
        spans: dict[TopicPartition, list[tuple[int, int, int]]] = {}  # (records, first, last)
        for tp, (first, last) in self.feeding.items():
            batcher = self.batchers.get(tp)
            fed_to = batcher.next_offset if batcher is not None else None
            start = first if fed_to is None else max(first, fed_to)
            if start <= last:
                spans.setdefault(tp, []).append((last - start + 1, start, last))
        for tp, flush in self.unwritten:
            for b in flush.batches:
                spans.setdefault(tp, []).append((len(b.lines), b.first_offset, b.last_offset))
        for tp, batcher in self.batchers.items():
            if not batcher.replaying and (span := batcher.held_offsets()) is not None:
                spans.setdefault(tp, []).append((batcher.held_records, span[0], span[1] - 1))
        return [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "held": sum(n for n, _, _ in items),
                "held_offsets": f"{min(f for _, f, _ in items)}-{max(la for _, _, la in items)}",
            }
            for tp, items in sorted(spans.items())
        ]

    # ------------------------------------------------------------------ flushing

    async def carry_out(self, tp: TopicPartition, flushes: list[Flush]) -> None:
        """Write and commit each flush in turn; until then each is in :attr:`unwritten`."""
        if not flushes:
            return
        entries = [(tp, flush) for flush in flushes]
        self.unwritten.extend(entries)
        for entry in entries:
            await self._carry_out(*entry)
            self.unwritten = [e for e in self.unwritten if e is not entry]

    async def _carry_out(self, tp: TopicPartition, flush: Flush) -> None:
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

    def offset_reset(self, reset: OffsetReset) -> None:
        """Count a reset (sink/resets.py logged it) and latch it for ``/healthz``."""
        partition = str(reset.partition)
        self.metrics.offset_resets.labels(partition).inc()
        self.metrics.records_skipped.labels(partition).inc(reset.skipped or 0)
        self.resets.append(reset)

    def health(self) -> Health:
        now = time.monotonic()
        if self.resets:
            more = f" (+{len(self.resets) - 1} more)" if len(self.resets) > 1 else ""
            return Health(False, self.resets[-1].reason + more)
        if now - self.last_loop > 30:
            return Health(False, f"consumer loop stalled for {now - self.last_loop:.0f}s")
        if self.failing_since is not None and now - self.failing_since > UNHEALTHY_PUT_SECONDS:
            return Health(False, f"object writes failing for {now - self.failing_since:.0f}s")
        if not self.batchers:
            return Health(False, "no partitions assigned")
        return Health(True)


@asynccontextmanager
async def open_writer(settings: Settings) -> AsyncIterator[ObjectWriter]:
    """The object writer ``sink.objects`` names: files under ``sink.objects_dir``, or S3
    (``settings.s3``)."""
    if settings.sink.objects == "folder":
        yield LocalWriter(settings.sink.objects_dir)
        return
    s3 = settings.s3
    async with S3Writer.open(s3.bucket, s3.endpoint_url, s3.region) as writer:
        yield writer


@dataclass
class Options:
    """What the environment (not the config file) decides: systemd, tests, local mode."""

    notifier: Notifier = field(default_factory=lambda: Notifier(None))
    watchdog_seconds: float | None = None  # from $WATCHDOG_USEC
    writer: ObjectWriter | None = None  # default: open_writer(settings) (sink.objects)
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
            writer = await stack.enter_async_context(open_writer(settings))
            target = (
                settings.sink.objects_dir
                if settings.sink.objects == "folder"
                else f"s3://{settings.s3.bucket}/{settings.s3.prefix}"
            )
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
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            consuming = tg.create_task(_consume(sink, source, stop), name="consume")
            watchdog = None
            if options.watchdog_seconds is not None:
                pings = _watchdog(options.notifier, options.watchdog_seconds, stop)
                watchdog = tg.create_task(pings, name="watchdog")
            await _stop_or_end(stop, consuming)  # a crash cancels this and raises
            # -- ordered shutdown (module docstring), one deadline for all of it --
            deadline = loop.time() + options.shutdown_seconds
            options.notifier.stopping(status="writing held objects")
            log.info("stopping", held=sum(b.held_records for b in sink.batchers.values()))
            # reading ends: the flush being carried out (S3 retried) gets the time left
            await asyncio.wait([consuming], timeout=options.shutdown_seconds)
            if not consuming.done():
                log.error("shutdown_flush_cut_off", seconds=options.shutdown_seconds)
                consuming.cancel()
            if watchdog is not None:  # reading may end without the stop flag (local mode)
                watchdog.cancel()
        status = await _shutdown(sink, source, deadline)
    if status == 0:
        log.info("sink_stopped")
    return status


async def _consume(sink: Sink, source: Source, stop: asyncio.Event) -> None:
    while source.reading(stop.is_set()):
        records = await sink.consumer.getmany(timeout_ms=POLL_MS)
        sink.last_loop = time.monotonic()
        await sink.consume(records)
        await sink.idle(set(records))


async def _stop_or_end(stop: asyncio.Event, consuming: asyncio.Task[None]) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopping, consuming], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()


async def _shutdown(sink: Sink, source: Source, deadline: float) -> int:
    """Reading has ended: write and commit what is held (until ``deadline``); the exit
    status: 1 if anything is left unwritten (logged per partition with its offsets)."""
    try:
        async with asyncio.timeout_at(deadline):
            await sink.drain()
    except TimeoutError:
        log.error("shutdown_drain_timeout")
    left = sink.leftovers() + source.leftovers()
    for item in left:
        log.error("shutdown_left_behind", **item)
    if left:
        log.error(
            "stopped_with_leftovers",
            held=sum(int(str(i.get("held", 0))) for i in left),
            unread=sum(int(str(i.get("unread", 0))) for i in left),
            partitions=sorted({f"{i['topic']}/{i['partition']}" for i in left}),
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
