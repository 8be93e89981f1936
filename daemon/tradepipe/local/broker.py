"""The in-process broker of local mode: Kafka's log model, one topic partition, in memory.

It plugs into the two real components unchanged: the producer publishes to it through the
:class:`~tradepipe.producer.output.TradeOutput` protocol (``start``/``publish``/``stop``), and the
sink (:func:`tradepipe.sink.serve`, the same loop as with Kafka) reads it through
:class:`LocalSource`: a :class:`LocalConsumer` (the :class:`tradepipe.sink.Consumer` protocol,
checked by mypy), no group, the one partition assigned from the start, reading until the broker
is closed and read to the end (rule 4). The broker keeps nothing across runs; the sink's spool
does: records an earlier run spooled and did not write are written by the next, whose offsets
are numbered after them (:meth:`LocalBroker.rebase`).

Rules:
1. **An append-only log with offsets.** Every published message gets the next offset, starting
   at 0, in publish order; a consumer reads from its position, as from Kafka.
2. **Bounded.** At most ``max_messages`` uncommitted messages are held: ``publish`` waits for
   room, so back-pressure reaches the producer's outbox, which then stops accepting live trades
   and backfills them later, exactly as when Kafka is slow. A batch larger than the bound is
   accepted once the log is empty, so nothing waits forever.
3. **Committed offsets trim the log.** A commit at ``n`` says everything below ``n`` is written
   downstream; those messages are dropped (the local "retention").
4. **Closing.** After :meth:`LocalBroker.close`, ``publish`` raises ``OutputUnavailable`` and the
   consumer sees what is left, then nothing: a clean shutdown flushes through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tradepipe.producer.output import OutputUnavailable
from tradepipe.producer.records import Record
from tradepipe.sink.consumer import Consumer

if TYPE_CHECKING:
    from tradepipe.sink.service import Sink


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the consumer sees it (the fields of aiokafka's ConsumerRecord we use)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: int  # trade time T, epoch ms (the Kafka message timestamp in production)


class LocalBroker:
    def __init__(self, topic: str = "aggtrades", max_messages: int = 200_000) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.topic, self.max_messages = topic, max_messages
        self.tp = TopicPartition(topic, 0)
        self._log: deque[Message] = deque()
        self.start_offset = 0  # offset of the oldest message held
        self.end_offset = 0  # the next offset to assign (Kafka's high-water mark)
        self.committed: tuple[int, str] | None = None  # offset and metadata, as Kafka keeps
        self.closed = False
        self._changed = asyncio.Condition()

    @property
    def held(self) -> int:
        """Messages in the log (published, not yet committed). Not ``__len__``: an empty
        broker must still be truthy (``options.output or default`` picks it)."""
        return len(self._log)

    # ---------------------------------------------------------------- TradeOutput (producer side)

    async def start(self) -> None:
        if self.closed:
            raise OutputUnavailable(f"the local broker of {self.topic!r} is closed")

    async def publish(self, records: Sequence[Record]) -> None:
        """Append ``records`` in order once there is room (rule 2)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self.closed
                    or not self._log
                    or len(self._log) + len(records) <= self.max_messages
                )
            )
            if self.closed:
                raise OutputUnavailable(f"the local broker of {self.topic!r} is closed")
            for r in records:
                self._log.append(Message(self.topic, 0, self.end_offset, r.key, r.value, r.time_ms))
                self.end_offset += 1
            self._changed.notify_all()

    async def stop(self) -> None:
        return None  # nothing to flush: publish returns only once records are in the log

    # ---------------------------------------------------------------- consumer side

    async def fetch(self, position: int, max_messages: int, wait: float) -> list[Message]:
        """Messages from ``position`` on, waiting up to ``wait`` seconds for one; ``[]`` if none
        came (or the broker is closed and the consumer has read everything, rule 4)."""
        if position < self.start_offset:
            raise ValueError(f"position {position} is below the log start {self.start_offset}")
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait_for(lambda: self.closed or position < self.end_offset)
            first = position - self.start_offset
            stop = min(len(self._log), first + max_messages)
            return [self._log[i] for i in range(first, stop)]

    async def commit(self, offset: int, metadata: str) -> None:
        """Everything below ``offset`` is written downstream: trim it (rule 3)."""
        if not self.start_offset <= offset <= self.end_offset:
            raise ValueError(f"commit at {offset} outside [{self.start_offset}, {self.end_offset}]")
        async with self._changed:
            while self.start_offset < offset:
                self._log.popleft()
                self.start_offset += 1
            self.committed = (offset, metadata)
            self._changed.notify_all()

    def rebase(self, offset: int) -> None:
        """Number the log from ``offset`` (the sink's spool holds offsets of an earlier run
        up to it): before anything is consumed or committed; messages held are renumbered."""
        if self.committed is not None:
            raise ValueError("rebase after a commit")
        shift = offset - self.start_offset
        self._log = deque(
            Message(m.topic, m.partition, m.offset + shift, m.key, m.value, m.timestamp)
            for m in self._log
        )
        self.start_offset += shift
        self.end_offset += shift

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()


class LocalConsumer:
    """The :class:`tradepipe.sink.Consumer` calls, served from a :class:`LocalBroker`: one
    partition, always assigned, read from its start."""

    def __init__(self, broker: LocalBroker, max_records: int = 10_000) -> None:
        self.broker, self.max_records = broker, max_records
        self._position = broker.start_offset
        self._paused = False

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Message]]:
        if self._paused:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        messages = await self.broker.fetch(self._position, self.max_records, timeout_ms / 1000)
        if not messages:
            return {}
        self._position = messages[-1].offset + 1
        return {self.broker.tp: messages}

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset({self.broker.tp})

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read from ``offset`` next (it must still be in the log)."""
        self._check(partition)
        if not self.broker.start_offset <= offset <= self.broker.end_offset:
            raise ValueError(
                f"seek to {offset} outside [{self.broker.start_offset}, {self.broker.end_offset}]"
            )
        self._position = offset

    def highwater(self, partition: TopicPartition) -> int:
        self._check(partition)
        return self.broker.end_offset

    async def position(self, partition: TopicPartition) -> int:
        self._check(partition)
        return self._position

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        for partition, meta in offsets.items():
            self._check(partition)
            await self.broker.commit(meta.offset, meta.metadata)

    def pause(self, *partitions: TopicPartition) -> None:
        """Fetch nothing until :meth:`resume` (the sink's spool is full)."""
        for partition in partitions:
            self._check(partition)
            self._paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for partition in partitions:
            self._check(partition)
            self._paused = False

    def rebased(self) -> None:
        """The broker was renumbered (:meth:`LocalBroker.rebase`) before anything was read."""
        self._position = self.broker.start_offset

    def _check(self, partition: TopicPartition) -> None:
        if partition != self.broker.tp:
            raise ValueError(f"{partition} is not the local broker's partition {self.broker.tp}")

    @property
    def next_offset(self) -> int:
        """The offset read next."""
        return self._position

    @property
    def drained(self) -> bool:
        """Closed, and everything published was read."""
        return self.broker.closed and self._position >= self.broker.end_offset


class LocalSource:
    """The :class:`tradepipe.sink.Source` of local mode: the broker's one partition, assigned
    from the start with no checkpoint; reading ends once the broker is closed and read to the
    end (the stop flag is not needed: the pipeline closes the broker after the producer
    handed everything over)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker
        self._consumer = LocalConsumer(broker)

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    async def start(self, sink: Sink) -> None:
        tp = self.broker.tp
        state = await sink.spool.state(tp.topic, tp.partition)
        if state is not None and state.next_offset > self.broker.start_offset:
            # an earlier run's records wait in the spool: number this run's after them
            self.broker.rebase(state.next_offset)
            self._consumer.rebased()
        await sink.partition_assigned(tp, None, None)

    async def stop(self) -> None:
        return None  # no group to leave, no connection to close

    def reading(self, stopping: bool) -> bool:
        return not self._consumer.drained

    def leftovers(self) -> list[dict[str, object]]:
        """Messages not in the sink's spool (never read, or read and not yet spooled, when
        the shutdown's time ran out): lost with the process. The sink commits each fetch
        once it is spooled, and a commit trims the broker's log (rule 3), so these are the
        messages the broker still holds."""
        position, end = self.broker.start_offset, self.broker.end_offset
        if position >= end:
            return []
        tp = self.broker.tp
        return [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "unread": end - position,
                "unread_offsets": f"{position}-{end - 1}",
            }
        ]
