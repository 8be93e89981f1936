"""The sink's records from Kafka: an ``AIOKafkaConsumer`` in the group ``kafka.group_id``.

Offsets are committed by the sink only (no auto-commit), once the records are in its spool
(metadata ``spool``); a partition assigned is told to the sink with the checkpoint a sink
without a spool committed as the offset's metadata, if any (read with the admin client, which
returns the metadata), so an upgrade resumes the same objects. Records are read
``read_committed`` from the earliest offset when the group has none. An offset found deleted
(retention passed it) is never reset silently: :mod:`.resets` counts it, logs it and makes
``/healthz`` say so. Reading ends when the stop flag is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tradepipe.config import Settings
from tradepipe.sink.checkpoint import Checkpoint, CheckpointError
from tradepipe.sink.consumer import Consumer
from tradepipe.sink.resets import OffsetReset, ResettingConsumer

if TYPE_CHECKING:
    from tradepipe.sink.service import Sink

SPOOL_METADATA = "spool"  # what the sink commits with each offset (its checkpoint is spooled)

log = structlog.get_logger("tradepipe.sink")


class KafkaSource:
    """:class:`~tradepipe.sink.consumer.Source` of the consumer group ``kafka.group_id``."""

    def __init__(self, settings: Settings) -> None:
        self.kafka = kafka = settings.kafka
        self._aiokafka = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=kafka.group_id,
            enable_auto_commit=False,
            # "none": aiokafka raises instead of resetting; ResettingConsumer seeks itself,
            # to the beginning for a partition with no commit, and alarms on a deleted offset
            auto_offset_reset="none",
            isolation_level="read_committed",
        )
        self._consumer = ResettingConsumer(self._aiokafka, self._reset)
        self._admin: AIOKafkaAdminClient | None = None
        self._sink: Sink | None = None

    @property
    def consumer(self) -> Consumer:
        # aiokafka's untyped consumer, wrapped; tests/sink/test_consumer.py checks the real
        # class has every method the wrapper calls
        return self._consumer

    def _reset(self, reset: OffsetReset) -> None:
        if self._sink is not None:  # (logged at error level by ResettingConsumer either way)
            self._sink.offset_reset(reset)

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap_servers)
        await admin.start()
        self._admin = admin
        listener = _Rebalance(sink, admin, self.kafka.group_id)
        self._aiokafka.subscribe([self.kafka.topic], listener=listener)
        await self._aiokafka.start()

    async def stop(self) -> None:
        """Leave the group (the consumer's stop), then close the admin client."""
        try:
            await self._aiokafka.stop()
        finally:
            if self._admin is not None:
                await self._admin.close()

    def reading(self, stopping: bool) -> bool:
        return not stopping

    def leftovers(self) -> list[dict[str, object]]:
        return []  # records not read stay in Kafka: the committed offsets say where to resume


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions assigned and revoked, told to the sink; with an assigned one, the checkpoint a
    sink without a spool committed with its offset (``v1|...``; the spool's own commits carry
    ``spool``), which the sink adopts for a partition its spool does not know."""

    def __init__(self, sink: Sink, admin: AIOKafkaAdminClient, group_id: str) -> None:
        self.sink, self.admin, self.group_id = sink, admin, group_id

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:  # what is spooled stays here; the next owner reads past the commit
            self.sink.partition_revoked(tp)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        committed = await self.admin.list_consumer_group_offsets(
            self.group_id, partitions=list(assigned)
        )
        for tp in assigned:
            resume = None
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            text = meta.metadata if offset is not None else ""
            if text and text != SPOOL_METADATA:
                try:
                    resume = Checkpoint.from_metadata(meta.offset, text)
                except CheckpointError as exc:
                    log.warning("checkpoint_ignored", partition=tp.partition, error=str(exc))
            await self.sink.partition_assigned(tp, offset, resume)
