"""``tradepipe sink``: a consumer in, the durable spool between, an object writer out.

:func:`serve` (``tradepipe sink``, and ``tradepipe run`` in local mode) = start-up -> two tasks,
the reader and the cutter (and the watchdog), in one ``TaskGroup`` -> ordered shutdown once
reading has ended. It handles no signals itself: the command installs handlers that only set
``stop`` (:mod:`tradepipe.commands.signals`), tests and local mode pass their own event. What
the environment decides (not the config file) comes in :class:`Options`: the systemd notifier
and watchdog, an object writer, a record :class:`~.consumer.Source`, the metrics registry.

Start-up: open the object writer (``sink.objects``: a folder, ``sink.objects_dir``, or S3; or
``Options.writer``), open the spool (``sink.spool_dir``, :mod:`.spool`) and give every partition
it holds a batcher resumed from the spool's checkpoint, start the metrics server
(``sink.metrics_listen``), join: Kafka's consumer group by default (:class:`~.kafka.KafkaSource`),
or ``Options.source`` (local mode's in-process broker); ``READY=1``.

**The reader** (never waits on S3): fetch records, decode each (a malformed one is counted,
logged and quarantined, and spooled as a marker: the batcher must see it), append them to the
spool (one durable transaction per partition and fetch), then commit the offset after them to
Kafka (metadata ``spool``: the checkpoint lives in the spool now). A commit that fails (a
rebalance) is logged and left to the next one: the records are safe in the spool. Records
below what the spool has are re-deliveries if they are at or above the offset committed when
the partition was assigned (a partition with none gets one before its first records are
spooled, so a crash between the two commits always leaves one), and are skipped; otherwise the
offsets went back (the topic was re-created): the partition is paused, its spooled records are
written, it is forgotten and read again from the new offsets.

**The bound:** while the spool's database uses ``sink.spool_max_bytes`` or more, the reader
pauses every partition it owns (aiokafka's ``pause``; it keeps polling, so it stays in the
group), sets ``tradepipe_sink_spool_paused``, counts ``tradepipe_sink_spool_pauses_total``, logs
``spool_full`` at error level and makes ``/healthz`` answer 503; it resumes once the spool is
below 90 % of the bound. Nothing is dropped.

**The cutter:** reads each partition's records back from the spool in offset order and feeds
its batcher (:mod:`.batcher`: the same rules, keys and bytes as ever); a partition whose
spooled records are all fed and that gets no more (caught up with its log end, paused, or no
longer ours) gets the wall-clock flushes. Carrying out a flush: save ``before`` in the spool if
set, put all objects (concurrently, each retried with bounded backoff -- 0.2 s doubling to 10 s
-- for ever: counted, logged, ``/healthz`` 503 after a minute of failures), then save the
checkpoint in the spool, which trims the records below it. A restart resumes from the spool's
checkpoint, so the objects rewritten after a crash have the same keys and bytes.

**Rebalances:** revoking a partition stops its reading only; its spooled records stay in this
host's spool and are cut and put by this host (the committed offset tells the next owner to
start after them). The keys are deterministic, so should two hosts ever put the same object
(a crash between the spool's append and Kafka's commit, then a rebalance) it is the same key,
and the Lambda's trade-id ledger makes a repeated trade change nothing.

Shutdown, in order, all of it within ``Options.shutdown_seconds`` of the stop (30 s, inside
systemd's ``TimeoutStopSec``): ``STOPPING=1``; the reader ends (its append and commit in flight
finish); the cutter feeds what is left in the spool, cuts every open object (a drain) and puts
them with the time left, then is cut off; leave the group, stop the metrics server, close the
writer and the spool. **Exit status:** 0 means nothing was left behind in memory: every record
read is either in a written object or still in the spool on disk -- those are logged per
partition with their offsets (``spool_kept``, at warning level: not lost, the next start puts
them) and shown in ``tradepipe_sink_spool_records``. 1 means records were left where nothing
keeps them: with the in-process broker, records never read or read and not yet spooled
(``shutdown_left_behind`` per partition with its offsets, then ``stopped_with_leftovers``, at
error level). With Kafka, records not yet spooled are not committed either: the next run reads
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeAlias

import stamina
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from tradepipe.config import Settings
from tradepipe.core import MINUTE_MS, Layout, ParseError, Reason, parse_event
from tradepipe.core.parse import MAX_LINE_BYTES
from tradepipe.observability import Health, MetricsServer, Notifier
from tradepipe.producer.quarantine import Quarantine
from tradepipe.sink.batcher import Batch, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import Checkpoint
from tradepipe.sink.consumer import Consumer, Message, Source
from tradepipe.sink.kafka import SPOOL_METADATA, KafkaSource
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer, retryable
from tradepipe.sink.resets import OffsetReset
from tradepipe.sink.spool import Entry, Spool

log = structlog.get_logger("tradepipe.sink")

POLL_MS = 500
UNHEALTHY_PUT_SECONDS = 60.0
READ_RECORDS = 5_000  # records the cutter takes from the spool at a time
RESUME_BELOW = 0.9  # of sink.spool_max_bytes: the reader resumes below it

TP: TypeAlias = TopicPartition


def record_line(value: bytes) -> bytes:
    """The NDJSON line for a (valid) Kafka value: the value itself, line breaks turned into
    spaces (JSON strings cannot hold a raw CR or LF, so each one is whitespace between tokens,
    and no UTF-8 sequence contains those bytes)."""
    return value.replace(b"\r", b" ").replace(b"\n", b" ")


class Sink:
    """State of a running sink: the reader's partitions, the spool, one batcher per partition
    the spool holds (the cutter's), and the I/O to flush them."""

    def __init__(
        self,
        settings: Settings,
        consumer: Consumer,
        writer: ObjectWriter,
        metrics: SinkMetrics,
        spool: Spool,
    ) -> None:
        self.settings, self.consumer, self.writer, self.metrics = (
            settings,
            consumer,
            writer,
            metrics,
        )
        self.spool = spool
        # the reader's side: partitions it owns (set by the Source), caught up with their end
        self.assigned: set[TP] = set()
        self.caught_up: set[TP] = set()
        self.paused = False
        self.paused_since: float | None = None
        # the cutter's side: per partition its batcher and the next spooled offset to feed
        self.batchers: dict[TP, PartitionBatcher] = {}
        self.cursor: dict[TP, int] = {}
        # the offset after the last record spooled, per partition (the spool refuses below it)
        self.floor: dict[TP, int] = {}
        # after an assignment whose committed offset is below the floor: from where Kafka may
        # send records again that the spool has (a crash between the two commits)
        self.redelivery: dict[TP, int] = {}
        # partitions whose offsets went back (topic re-created): paused until their spooled
        # records are written, then read again from the offset given
        self.restarting: dict[TP, int] = {}
        self.uncommitted: set[TP] = set()  # assigned with no committed offset
        self._skipped: dict[TP, int] = {}  # batcher.skipped already counted in the metric
        self.spooled = asyncio.Event()  # set by the reader after an append
        self.reading_ended = asyncio.Event()  # set by the shutdown: the cutter drains
        self.quarantine = Quarantine(
            settings.sink.quarantine_path, settings.feed.quarantine_max_bytes
        )
        self.prefix = settings.s3.prefix
        self.last_loop = time.monotonic()
        self.failing_since: float | None = None
        # offset resets seen (sink/resets.py): /healthz is unhealthy until a restart
        self.resets: list[OffsetReset] = []

    # ------------------------------------------------------------------ partitions

    async def load(self) -> None:
        """A batcher for every partition the spool holds, resumed from its checkpoint."""
        self.metrics.spool_oldest.set_function(self._oldest_age)
        for state in await self.spool.partitions():
            tp = TP(state.topic, state.partition)
            self._new_batcher(tp, state.checkpoint)
            self.floor[tp] = state.next_offset
        self._show_spool()
        usage = self.spool.usage
        if usage.records:
            log.info("spool_resumed", records=usage.records, bytes=usage.bytes,
                     partitions=len(self.batchers))  # fmt: skip

    async def partition_assigned(
        self, tp: TP, committed: int | None, checkpoint: Checkpoint | None
    ) -> None:
        """The reader owns ``tp`` now, from the ``committed`` offset (``None``: none).
        ``checkpoint``: one a sink without a spool committed with the offset, adopted if the
        spool does not know the partition yet (so an upgrade rebuilds the same objects)."""
        if checkpoint is not None and await self.spool.adopt(tp.topic, tp.partition, checkpoint):
            log.info("checkpoint_adopted", partition=tp.partition, offset=checkpoint.offset)
            self._new_batcher(tp, checkpoint)
            self.floor[tp] = checkpoint.offset
        if committed is not None and committed < self.floor.get(tp, 0):
            self.redelivery[tp] = committed
        else:
            self.redelivery.pop(tp, None)
        if committed is None:
            self.uncommitted.add(tp)
        else:
            self.uncommitted.discard(tp)
        self.assigned.add(tp)
        self.caught_up.discard(tp)
        if self.paused or tp in self.restarting:
            self.consumer.pause(tp)
        log.info("partition_assigned", topic=tp.topic, partition=tp.partition,
                 spooled=tp in self.batchers)  # fmt: skip

    def partition_revoked(self, tp: TP) -> None:
        """Reading ``tp`` ends here; what the spool holds of it is still cut and put here."""
        self.assigned.discard(tp)
        self.caught_up.discard(tp)
        log.info("partition_revoked", topic=tp.topic, partition=tp.partition)

    def _new_batcher(self, tp: TP, resume: Checkpoint | None) -> None:
        s = self.settings.sink
        self.batchers[tp] = PartitionBatcher(
            tp.topic, tp.partition, int(s.grace_seconds * 1000), s.max_object_trades, resume,
            Layout(s.layout),
        )  # fmt: skip
        self.cursor[tp] = resume.offset if resume is not None else 0
        log.info("batcher_started", topic=tp.topic, partition=tp.partition,
                 resume_offset=resume.offset if resume else None,
                 replay_to=resume.position if resume else None, layout=s.layout)  # fmt: skip

    # ------------------------------------------------------------------ the reader

    async def read(self, records: Mapping[TP, Sequence[Message]]) -> None:
        """Spool each partition's records, then commit the offset after them."""
        for tp, messages in records.items():
            if not messages:
                continue
            if tp not in self.assigned:
                # Revoked while the fetch was in flight: the next owner reads them -- or
                # assigned, with records fetched before on_partitions_assigned (which awaits
                # the committed checkpoint) took it: then read them again, or they are lost.
                if tp in self.consumer.assignment():
                    first = messages[0].offset
                    self.consumer.seek(tp, first)
                    log.warning("records_before_assignment", partition=tp.partition, offset=first)
                continue
            if tp in self.restarting:  # fetched before the pause took effect: read them later
                self.consumer.seek(tp, self.restarting[tp])
                continue
            next_offset = messages[-1].offset + 1
            floor = self.floor.get(tp, 0)
            if messages[0].offset < floor:
                since = self.redelivery.get(tp)
                if since is None or messages[0].offset < since:
                    self._offsets_went_back(tp, messages[0].offset, floor)
                    continue
                log.info("redelivered_records_ignored", partition=tp.partition,
                         offsets=f"{messages[0].offset}-{min(next_offset, floor) - 1}")  # fmt: skip
                messages = [m for m in messages if m.offset >= floor]
            if messages and tp in self.uncommitted and not await self._commit(tp, messages[0]):
                continue
            if messages:
                entries = [self._decode(tp, m) for m in messages]
                await self.spool.append(tp.topic, tp.partition, entries)
                self.floor[tp] = next_offset
                self.redelivery.pop(tp, None)
                if tp not in self.batchers:
                    self._new_batcher(tp, None)
                self.spooled.set()
                self._show_spool()
            try:
                await self.consumer.commit({tp: OffsetAndMetadata(next_offset, SPOOL_METADATA)})
                self.metrics.commits.inc()
            except KafkaError as exc:  # a rebalance: the next commit covers these records
                log.warning("commit_failed", partition=tp.partition, offset=next_offset,
                            error=repr(exc))  # fmt: skip

    async def _commit(self, tp: TP, first: Message) -> bool:
        """A partition with no committed offset gets one *before* its first records are
        spooled, so that a crash between the spool's commit and Kafka's always leaves a
        committed offset to tell a re-delivery (from it) from offsets that went back (a
        re-created topic has no commit). ``False``: it failed, the records are read again."""
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(first.offset, SPOOL_METADATA)})
        except KafkaError as exc:
            log.warning("commit_failed", partition=tp.partition, offset=first.offset,
                        error=repr(exc))  # fmt: skip
            self.consumer.seek(tp, first.offset)
            return False
        self.uncommitted.discard(tp)
        self.metrics.commits.inc()
        return True

    def _offsets_went_back(self, tp: TP, offset: int, floor: int) -> None:
        """Kafka sends offsets below what the spool has, and not as a re-delivery: the topic
        was re-created (or the log truncated). The spool's records of the partition are
        written first (the cutter, :meth:`_start_over`), then the partition starts over from
        ``offset``; until then it is paused. Nothing is refused, nothing is lost."""
        log.error("spool_offsets_went_back", topic=tp.topic, partition=tp.partition,
                  offset=offset, spool_next_offset=floor,
                  action="writing the spooled records, then reading from the offset")  # fmt: skip
        self.consumer.seek(tp, offset)
        self.consumer.pause(tp)
        self.restarting[tp] = offset
        self.spooled.set()  # wake the cutter

    async def after_read(self, fetched: set[TP]) -> None:
        """Which partitions are caught up with their log end (the cutter's idle rule), then
        the spool's bound: pause at it, resume below it."""
        for tp in list(self.assigned):
            if tp in fetched:
                self.caught_up.discard(tp)
                continue
            end = self.consumer.highwater(tp)
            if end is not None and await self.consumer.position(tp) >= end:
                self.caught_up.add(tp)
            else:
                self.caught_up.discard(tp)
        self._bound()

    def _bound(self) -> None:
        limit = self.settings.sink.spool_max_bytes
        used = self.spool.usage.bytes
        if not self.paused and used >= limit:
            self.paused, self.paused_since = True, time.monotonic()
            self.consumer.pause(*self.assigned)
            self.metrics.spool_paused.set(1)
            self.metrics.spool_pauses.inc()
            log.error("spool_full", bytes=used, limit=limit, records=self.spool.usage.records,
                      partitions=sorted(tp.partition for tp in self.assigned))  # fmt: skip
        elif self.paused and used < limit * RESUME_BELOW:
            self.consumer.resume(*(self.consumer.assignment() - self.restarting.keys()))
            paused_for = time.monotonic() - (self.paused_since or time.monotonic())
            self.paused, self.paused_since = False, None
            self.metrics.spool_paused.set(0)
            log.warning("spool_resumed_reading", bytes=used, limit=limit,
                        paused_seconds=round(paused_for, 1))  # fmt: skip

    def _decode(self, tp: TP, msg: Message) -> Entry:
        offset, value = msg.offset, msg.value
        self.metrics.records.inc()
        try:
            if value is None:
                raise ParseError(Reason.EMPTY, "null record value (a tombstone?)")
            trade = parse_event(value, None, int(time.time() * 1000))
            return Entry(offset, trade.symbol, trade.time_ms, record_line(value))
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
            return Entry(offset, None, 0, b"")

    # ------------------------------------------------------------------ the cutter

    async def cut(self) -> None:
        """Feed the batchers from the spool and carry out their flushes; after
        :attr:`reading_ended`, feed the rest, cut everything held, and return."""
        while True:
            self.spooled.clear()
            ending = self.reading_ended.is_set()
            fed = {tp for tp in list(self.batchers) if await self._feed(tp)}
            if ending:
                if not fed:
                    await self._drain()
                    return
                continue
            # partitions with nothing more spooled: started over, or wall-clock flushes
            for tp in [tp for tp in self.restarting if tp not in fed]:
                await self._start_over(tp)
            for tp in [tp for tp in self.batchers if tp not in fed]:
                await self._idle(tp)
            if not fed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_MS / 1000):
                        await self.spooled.wait()

    async def _feed(self, tp: TP) -> bool:
        entries = await self.spool.read(tp.topic, tp.partition, self.cursor[tp], READ_RECORDS)
        if not entries:
            return False
        batcher = self.batchers[tp]
        for e in entries:
            await self.carry_out(tp, batcher.add(e.offset, e.symbol, e.time_ms, e.line))
            self.cursor[tp] = e.offset + 1
        self.metrics.replay_skipped.inc(batcher.skipped - self._skipped.get(tp, 0))
        self._skipped[tp] = batcher.skipped
        self.metrics.held.set(sum(b.held_records for b in self.batchers.values()))
        return True

    async def _idle(self, tp: TP) -> None:
        """All of ``tp``'s spooled records are fed: wall-clock flushes if no more will come
        soon (caught up with the log end, paused at the bound, or no longer read here)."""
        if tp in self.assigned and not self.paused and tp not in self.caught_up:
            return
        batcher = self.batchers[tp]
        if batcher.replaying:
            await self.carry_out(tp, batcher.end_replay())
            return
        flush = batcher.tick(int(time.time() * 1000))
        if flush is not None:
            await self.carry_out(tp, [flush])

    async def _start_over(self, tp: TP) -> None:
        """All of ``tp``'s spooled records are fed (its offsets went back): write everything
        held, forget the partition, read it again from the new offsets."""
        batcher = self.batchers.get(tp)
        if batcher is not None:
            await self.carry_out(tp, batcher.end_replay())
            flush = batcher.drain()
            if flush is not None:
                await self.carry_out(tp, [flush])
        await self.spool.forget(tp.topic, tp.partition)
        for state in (self.batchers, self.cursor, self._skipped, self.floor, self.redelivery):
            state.pop(tp, None)
        self.restarting.pop(tp, None)
        if tp in self.assigned and not self.paused:
            self.consumer.resume(tp)
        log.warning("spool_partition_started_over", topic=tp.topic, partition=tp.partition)

    async def _drain(self) -> None:
        for tp, batcher in list(self.batchers.items()):
            await self.carry_out(tp, batcher.end_replay())
            flush = batcher.drain()
            if flush is not None:
                await self.carry_out(tp, [flush])
        self.metrics.held.set(sum(b.held_records for b in self.batchers.values()))

    async def carry_out(self, tp: TP, flushes: list[Flush]) -> None:
        for flush in flushes:
            if flush.before is not None:
                await self.spool.commit(tp.topic, tp.partition, flush.before)
            started = time.time()
            async with asyncio.TaskGroup() as tg:
                for batch in flush.batches:
                    tg.create_task(self.put(batch, flush.reason))
            trimmed = await self.spool.commit(tp.topic, tp.partition, flush.checkpoint)
            self._show_spool()
            self.metrics.held.set(sum(b.held_records for b in self.batchers.values()))
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
                trimmed=trimmed,
                held=len(flush.checkpoint.held),
            )

    async def put(self, batch: Batch, reason: str) -> None:
        """Put one object, retried with bounded backoff for ever (the spool keeps its records
        meanwhile); an error S3 will not retry by itself (access denied, no such bucket) is
        logged at error level: it needs an operator, and the sink goes on trying."""
        key, body = batch.key(self.prefix), batch.body()
        started = time.monotonic()
        attempt = 0
        async for attempt_ctx in stamina.retry_context(
            on=Exception, attempts=None, timeout=None, wait_initial=0.2, wait_max=10.0
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
                    level = log.warning if retryable(exc) else log.error
                    level("put_failed", key=key, attempt=attempt, error=str(exc)[:500])
                    raise
        self.failing_since = None
        self.metrics.put_seconds.observe(time.monotonic() - started)
        self.metrics.objects.labels(reason).inc()
        self.metrics.trades.inc(len(batch.lines))
        self.metrics.bytes.inc(len(body))

    # ------------------------------------------------------------------ reporting

    def _show_spool(self) -> None:
        self.metrics.spool_bytes.set(self.spool.usage.bytes)
        self.metrics.spool_records.set(self.spool.usage.records)

    def _oldest_age(self) -> float:
        oldest = self.spool.usage.oldest_ms
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

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
        if self.paused:
            usage, limit = self.spool.usage, self.settings.sink.spool_max_bytes
            return Health(
                False,
                f"spool full ({usage.bytes} of {limit} bytes, {usage.records} records): "
                "reading paused",
            )
        if now - self.last_loop > 30:
            return Health(False, f"consumer loop stalled for {now - self.last_loop:.0f}s")
        if self.failing_since is not None and now - self.failing_since > UNHEALTHY_PUT_SECONDS:
            return Health(False, f"object writes failing for {now - self.failing_since:.0f}s")
        if not self.assigned:
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
    (0: nothing left behind in memory)."""
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
        spool = await Spool.open(settings.sink.spool_dir)
        stack.push_async_callback(spool.close)
        source = options.source if options.source is not None else KafkaSource(settings)
        sink = Sink(settings, source.consumer, writer, metrics, spool)
        await sink.load()
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
            spool=str(settings.sink.spool_dir),
        )
        options.notifier.ready(status=f"consuming {kafka.topic}")
        if options.on_ready is not None:
            options.on_ready(sink)
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(_read(sink, source, stop), name="read")
            cutting = tg.create_task(sink.cut(), name="cut")
            watchdog = None
            if options.watchdog_seconds is not None:
                pings = _watchdog(options.notifier, options.watchdog_seconds, stop)
                watchdog = tg.create_task(pings, name="watchdog")
            await _stop_or_end(stop, reading)  # a crash cancels this and raises
            # -- ordered shutdown (module docstring), one deadline for all of it --
            deadline = loop.time() + options.shutdown_seconds
            options.notifier.stopping(status="writing held objects")
            log.info("stopping", spooled=spool.usage.records)
            await asyncio.wait([reading], timeout=options.shutdown_seconds)
            if not reading.done():
                reading.cancel()
            sink.reading_ended.set()
            await asyncio.wait([cutting], timeout=max(0.0, deadline - loop.time()))
            if not cutting.done():
                log.error("shutdown_puts_cut_off", seconds=options.shutdown_seconds)
                cutting.cancel()
            if watchdog is not None:  # reading may end without the stop flag (local mode)
                watchdog.cancel()
        await _report_spool(sink)
        status = _report_leftovers(source)
    if status == 0:
        log.info("sink_stopped", spooled=spool.usage.records)
    return status


async def _read(sink: Sink, source: Source, stop: asyncio.Event) -> None:
    while source.reading(stop.is_set()):
        records = await sink.consumer.getmany(timeout_ms=POLL_MS)
        sink.last_loop = time.monotonic()
        await sink.read(records)
        await sink.after_read({tp for tp, m in records.items() if m})


async def _stop_or_end(stop: asyncio.Event, reading: asyncio.Task[None]) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopping, reading], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()


async def _report_spool(sink: Sink) -> None:
    """What the spool still holds at the stop: safe on disk, put by the next start."""
    for item in await sink.spool.summary():
        log.warning("spool_kept", **item)


def _report_leftovers(source: Source) -> int:
    """Records left where nothing keeps them (the in-process broker's): exit status 1."""
    left = source.leftovers()
    for item in left:
        log.error("shutdown_left_behind", **item)
    if left:
        log.error(
            "stopped_with_leftovers",
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
