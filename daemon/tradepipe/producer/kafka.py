"""The production :class:`~tradepipe.producer.output.TradeOutput`: aiokafka, acks=all, idempotent.

Records are appended to aiokafka batches we build ourselves (one per partition, split when
full) and submitted with ``send_batch``: far cheaper per record than ``send()``, and the
publisher keeps one chunk in flight, so chunks grow with the load (few records per request at
low rates: low latency; large batches under load: high throughput). Partitions are chosen by
aiokafka's default partitioner (murmur2 of the key), as ``send(key=...)`` would.

On start the topic is created if missing with ``kafka.partitions`` partitions and
``retention.ms`` and ``segment.ms`` from the settings; "already exists" comes back as an error
code in the response, not an exception. An existing topic with fewer partitions than
``kafka.partitions`` is refused (:class:`TopicMismatch`, logged at error level with both
counts): the operator asked for a scale-out the topic cannot give, and Kafka never adds
partitions by itself. One with more is used as it is (logged).

Poison records (the rules for what Kafka refuses for ever):

1. A record larger than ``kafka.max_batch_size`` (key + value) is refused here, before it is
   sent: the broker's ``message.max.bytes`` (about 1 MB) would refuse it for ever.
2. A batch the broker refuses with a per-record, non-retriable error (``InvalidTimestamp`` --
   a trade time more than ``message.timestamp.after.max.ms``, 1 h by default, ahead of the
   broker's clock --, ``MessageSizeTooLarge``, ``RecordListTooLarge``, ``CorruptRecord``)
   leaves the idempotent producer unusable: its sequence numbers went on without the broker,
   so every later batch of that partition fails with ``OutOfOrderSequenceNumber``. The
   producer is rebuilt (a new producer id) and the records of the failed batches are sent
   again one by one, in order; each one refused again is set aside (rebuilding once more).
3. Those set aside are raised as :class:`RecordsRejected` once everything else of the chunk
   is acknowledged; the publisher quarantines them. Any other error (retriable, a timeout, an
   unknown error code) is :class:`OutputUnavailable`: the whole chunk is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner

from tradepipe.config import KafkaSettings
from tradepipe.producer.output import OutputUnavailable, RecordsRejected, Rejection
from tradepipe.producer.records import Record

log = structlog.get_logger(__name__)
_TOPIC_EXISTS = TopicAlreadyExistsError.errno
STOP_TIMEOUT = 10.0
# rule 2: what the broker refuses for ever because of the records themselves (metric labels)
REFUSED: dict[type[KafkaError], str] = {
    InvalidTimestampError: "kafka_invalid_timestamp",
    MessageSizeTooLargeError: "kafka_record_too_large",
    RecordListTooLargeError: "kafka_record_too_large",
    CorruptRecordException: "kafka_invalid_record",
}
_REFUSED = tuple(REFUSED)


def refusal_reason(exc: BaseException) -> str | None:
    for cls, reason in REFUSED.items():
        if isinstance(exc, cls):
            return reason
    return None


class TopicMismatch(Exception):
    """The existing topic cannot be what the settings ask for (fewer partitions): fatal, the
    ``produce`` command exits 2 (not retried, unlike :class:`OutputUnavailable`)."""


async def ensure_topic(settings: KafkaSettings, partitions: int | None = None) -> bool:
    """Create the topic if missing (``kafka.partitions`` partitions unless ``partitions``
    says otherwise); True if we created it."""
    partitions = settings.partitions if partitions is None else partitions
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=settings.request_timeout_ms,
        client_id="tradepipe-producer-admin",
    )
    try:
        await admin.start()
        topic = NewTopic(
            settings.topic,
            partitions,
            1 if settings.replication_factor < 1 else settings.replication_factor,
            topic_configs={
                "retention.ms": str(settings.retention_ms),
                "segment.ms": str(settings.segment_ms),
            },
        )
        resp = await admin.create_topics([topic])
    except KafkaError as exc:
        raise OutputUnavailable(f"cannot create topic {settings.topic!r}: {exc!r}") from exc
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await admin.close()
    errors = [(name, code) for name, code, *_ in resp.topic_errors if code]
    if not errors:
        log.info("topic_created", topic=settings.topic, partitions=partitions,
                 retention_ms=settings.retention_ms, segment_ms=settings.segment_ms)  # fmt: skip
        return True
    if all(code == _TOPIC_EXISTS for _, code in errors):
        return False
    raise OutputUnavailable(f"creating topic {settings.topic!r} failed: {errors}")


def topic_mismatch(settings: KafkaSettings, found: int) -> TopicMismatch:
    """Log (error level) and build the refusal of a topic with fewer partitions than asked."""
    fix = (
        f"add partitions (kafka-topics.sh --alter --topic {settings.topic} --partitions "
        f"{settings.partitions}) or set kafka.partitions = {found}"
    )
    log.error("topic_has_fewer_partitions", topic=settings.topic, partitions=found,
              configured_partitions=settings.partitions, fix=fix)  # fmt: skip
    return TopicMismatch(
        f"topic {settings.topic!r} has {found} partition(s), kafka.partitions asks for "
        f"{settings.partitions}: {fix}"
    )


class KafkaOutput:
    def __init__(self, settings: KafkaSettings, create_topic: bool = True) -> None:
        self.settings = settings
        self.create_topic = create_topic
        self._producer: AIOKafkaProducer | None = None
        self._partitions: list[int] = []
        self._partitioner = DefaultPartitioner()
        self.delivery_timeout = 4 * settings.request_timeout_ms / 1000

    async def start(self) -> None:
        if self.create_topic:
            await ensure_topic(self.settings)
        await self._start_producer()

    async def _start_producer(self) -> None:
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id="tradepipe-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # kafka.linger_ms is the publisher's: it hands over finished batches
            max_batch_size=s.max_batch_size,
            compression_type=None if s.compression_type == "none" else s.compression_type,
            request_timeout_ms=s.request_timeout_ms,
        )
        try:
            await producer.start()
            partitions = await producer.partitions_for(s.topic)
        except KafkaError as exc:
            # never send on a producer whose start() failed (aiokafka #759): drop it
            await _drop(producer)
            raise OutputUnavailable(f"cannot start the Kafka producer: {exc!r}") from exc
        except asyncio.CancelledError:  # stopped while starting: close what was opened
            await _drop(producer)
            raise
        if len(partitions) < s.partitions:
            await _drop(producer)
            raise topic_mismatch(s, len(partitions))
        self._producer = producer
        self._partitions = sorted(partitions)
        log.info("kafka_producer_started", topic=s.topic, partitions=len(self._partitions),
                 configured_partitions=s.partitions)  # fmt: skip

    async def _rebuild(self) -> None:
        """Rule 2: a fresh producer id, so sequence numbers start over."""
        await self.stop()
        await self._start_producer()

    async def publish(self, records: Sequence[Record]) -> None:
        rejected: list[Rejection] = []
        limit = self.settings.max_batch_size
        sendable: list[Record] = []
        for rec in records:  # rule 1
            size = len(rec.key) + len(rec.value)
            if size > limit:
                error = f"{size} bytes is more than kafka.max_batch_size ({limit})"
                rejected.append(Rejection(rec, "record_too_large", error))
            else:
                sendable.append(rec)
        failed = await self._send(sendable)
        if failed:  # rule 2
            first_error = failed[0][1]
            log.warning("kafka_batch_refused", error=repr(first_error),
                        records=sum(len(batch) for batch, _ in failed))  # fmt: skip
            await self._rebuild()
            for rec in (rec for batch, _ in failed for rec in batch):
                again = await self._send([rec])
                if not again:
                    continue
                exc = again[0][1]
                reason = refusal_reason(exc)
                await self._rebuild()
                if reason is None:  # refused alone only by the sequence: not the record's fault
                    raise OutputUnavailable(f"Kafka send failed: {exc!r}") from exc
                rejected.append(Rejection(rec, reason, repr(exc)))
        if rejected:  # rule 3
            raise RecordsRejected(rejected)

    async def _send(self, records: Sequence[Record]) -> list[tuple[list[Record], KafkaError]]:
        """Send ``records`` in per-partition batches; wait for every batch. Returns the batches
        refused as rule 2 says (with their error); raises :class:`OutputUnavailable` otherwise."""
        producer = self._producer
        if producer is None:
            raise OutputUnavailable("the Kafka producer is not started")
        if not records:
            return []
        futures: list[asyncio.Future[Any]] = []
        contents: list[list[Record]] = []
        try:
            for part, part_batches in self._batches(producer, records).items():
                for batch, recs in part_batches:
                    futures.append(await producer.send_batch(batch, self.settings.topic,
                                                             partition=part))  # fmt: skip
                    contents.append(recs)
            # aiokafka retries an idempotent batch until it succeeds; past this deadline the
            # producer is presumed wedged and is rebuilt (the publisher resends the chunk)
            _, pending = await asyncio.wait(futures, timeout=self.delivery_timeout)
        except KafkaError as exc:
            for fut in futures:
                fut.cancel()
            raise OutputUnavailable(f"Kafka send failed: {exc!r}") from exc
        if pending:
            for fut in pending:
                fut.cancel()
            raise OutputUnavailable(f"no acknowledgement within {self.delivery_timeout:g} s")
        return _refused(futures, contents)

    def _batches(
        self, producer: AIOKafkaProducer, records: Sequence[Record]
    ) -> dict[int, list[tuple[Any, list[Record]]]]:
        """Per partition, batches in record order, each with the records it holds."""
        batches: dict[int, list[tuple[Any, list[Record]]]] = {}
        partition_of: dict[str, int] = {}
        for rec in records:
            part = partition_of.get(rec.symbol)
            if part is None:
                part = self._partitioner(rec.key, self._partitions, self._partitions)
                partition_of[rec.symbol] = part
            open_batches = batches.setdefault(part, [])
            if (
                not open_batches
                or open_batches[-1][0].append(key=rec.key, value=rec.value, timestamp=rec.time_ms)
                is None
            ):
                batch = producer.create_batch()
                # the first record always fits an empty batch (rule 1 bounds its size)
                batch.append(key=rec.key, value=rec.value, timestamp=rec.time_ms)
                open_batches.append((batch, []))
            open_batches[-1][1].append(rec)
        return batches

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # stop() flushes; with the broker gone it could wait forever: bound it (anything
            # unacknowledged is still in the outbox and will be sent again)
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), STOP_TIMEOUT)


async def _drop(producer: AIOKafkaProducer) -> None:
    """Stop a producer that will not be used (bounded: the broker may be gone)."""
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        await asyncio.wait_for(producer.stop(), STOP_TIMEOUT)


def _refused(
    futures: Sequence[asyncio.Future[Any]], contents: Sequence[list[Record]]
) -> list[tuple[list[Record], KafkaError]]:
    """The batches refused as rule 2 says; any other failure raises :class:`OutputUnavailable`."""
    failed: list[tuple[list[Record], KafkaError]] = []
    for fut, recs in zip(futures, contents, strict=True):
        exc = fut.exception()
        if exc is None:
            continue
        if isinstance(exc, (*_REFUSED, OutOfOrderSequenceNumber)):
            failed.append((recs, exc))
        elif isinstance(exc, KafkaError):
            raise OutputUnavailable(f"Kafka send failed: {exc!r}") from exc
        else:
            raise exc
    return failed
