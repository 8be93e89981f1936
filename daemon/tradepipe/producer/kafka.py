"""The production :class:`~tradepipe.producer.sink.TradeSink`: aiokafka, ``acks=all``, idempotent.

Records are appended to aiokafka batches we build ourselves (one per partition, split when
full) and submitted with ``send_batch``: far cheaper per record than ``send()``, and the
publisher keeps one chunk in flight, so chunks grow with the load (few records per request at
low rates: low latency; large batches under load: high throughput). Partitions are chosen by
aiokafka's default partitioner (murmur2 of the key), as ``send(key=...)`` would.

On start the topic is created if missing with ``retention.ms`` and ``segment.ms`` from the
settings; "already exists" comes back as an error code in the response, not an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from tradepipe.config import KafkaSettings
from tradepipe.producer.records import Record
from tradepipe.producer.sink import SinkUnavailable

log = structlog.get_logger(__name__)
_TOPIC_EXISTS = TopicAlreadyExistsError.errno
STOP_TIMEOUT = 10.0


async def ensure_topic(settings: KafkaSettings, partitions: int = 1) -> bool:
    """Create the topic if missing; True if we created it."""
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
        raise SinkUnavailable(f"cannot create topic {settings.topic!r}: {exc!r}") from exc
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await admin.close()
    errors = [(name, code) for name, code, *_ in resp.topic_errors if code]
    if not errors:
        log.info("topic_created", topic=settings.topic, retention_ms=settings.retention_ms,
                 segment_ms=settings.segment_ms)  # fmt: skip
        return True
    if all(code == _TOPIC_EXISTS for _, code in errors):
        return False
    raise SinkUnavailable(f"creating topic {settings.topic!r} failed: {errors}")


class KafkaTradeSink:
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
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id="tradepipe-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=s.linger_ms,
            max_batch_size=s.max_batch_size,
            compression_type=None if s.compression_type == "none" else s.compression_type,
            request_timeout_ms=s.request_timeout_ms,
        )
        try:
            await producer.start()
            partitions = await producer.partitions_for(s.topic)
        except KafkaError as exc:
            # never send on a producer whose start() failed (aiokafka #759): drop it
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()
            raise SinkUnavailable(f"cannot start the Kafka producer: {exc!r}") from exc
        self._producer = producer
        self._partitions = sorted(partitions)
        log.info("kafka_producer_started", topic=s.topic, partitions=len(self._partitions))

    async def publish(self, records: Sequence[Record]) -> None:
        producer = self._producer
        if producer is None:
            raise SinkUnavailable("the Kafka producer is not started")
        batches: dict[int, list[Any]] = {}
        partition_of: dict[str, int] = {}
        for rec in records:
            part = partition_of.get(rec.symbol)
            if part is None:
                part = self._partitioner(rec.key, self._partitions, self._partitions)
                partition_of[rec.symbol] = part
            open_batches = batches.setdefault(part, [])
            if (
                not open_batches
                or open_batches[-1].append(key=rec.key, value=rec.value, timestamp=rec.time_ms)
                is None
            ):
                batch = producer.create_batch()
                if batch.append(key=rec.key, value=rec.value, timestamp=rec.time_ms) is None:
                    raise ValueError(f"record {rec.agg_id} is larger than max_batch_size")
                open_batches.append(batch)
        try:
            futures = [
                await producer.send_batch(batch, self.settings.topic, partition=part)
                for part, part_batches in batches.items()
                for batch in part_batches
            ]
            # aiokafka retries an idempotent batch until it succeeds; past this deadline the
            # producer is presumed wedged and is rebuilt (the publisher resends the chunk)
            await asyncio.wait_for(asyncio.gather(*futures), self.delivery_timeout)
        except KafkaError as exc:
            raise SinkUnavailable(f"Kafka send failed: {exc!r}") from exc
        except TimeoutError:
            for fut in futures:
                fut.cancel()
            raise SinkUnavailable(
                f"no acknowledgement within {self.delivery_timeout:g} s"
            ) from None

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # stop() flushes; with the broker gone it could wait forever: bound it (anything
            # unacknowledged is still in the outbox and will be sent again)
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.stop(), STOP_TIMEOUT)
