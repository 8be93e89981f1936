"""What the sink reads from: a :class:`Consumer` (the calls :class:`~.service.Sink` makes) and a
:class:`Source` (how that consumer joins, which partitions it owns, when reading ends).

Two implementations, one consume loop (:func:`tradepipe.sink.serve`):

- Kafka (:class:`tradepipe.sink.kafka.KafkaSource`): ``aiokafka.AIOKafkaConsumer`` in the
  consumer group ``kafka.group_id``; partitions come and go with rebalances, each resumed from
  the checkpoint committed with its offset; reading ends when ``stop`` is set (what is not yet
  consumed stays in Kafka, the committed offsets say where to resume).
- the in-process broker of local mode (:class:`tradepipe.local.broker.LocalSource`): no group,
  one partition assigned from the start; reading ends once the broker is closed and read to
  the end (so a clean shutdown flushes everything through); what it has
  not read when the shutdown's time runs out is lost, and reported (:meth:`Source.leftovers`).

aiokafka ships no type stubs (its types are ``Any`` here), so :class:`KafkaSource` assigns its
``AIOKafkaConsumer`` to a :class:`Consumer` at one place and ``tests/sink/test_consumer.py``
checks that the real class has every method of the protocol with compatible parameters;
:class:`~tradepipe.local.broker.LocalConsumer` is checked by mypy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

if TYPE_CHECKING:
    from tradepipe.sink.service import Sink


class Message(Protocol):
    """The fields of a consumed record the sink reads (aiokafka's ``ConsumerRecord``)."""

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


@runtime_checkable
class Consumer(Protocol):
    """Every call :class:`~tradepipe.sink.service.Sink` and the consume loop make of a consumer."""

    async def getmany(
        self, *, timeout_ms: int = 0
    ) -> Mapping[TopicPartition, Sequence[Message]]: ...

    def assignment(self) -> AbstractSet[TopicPartition]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def position(self, partition: TopicPartition) -> int: ...

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None: ...

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...


class Source(Protocol):
    """Where a sink's records come from (module docstring)."""

    @property
    def consumer(self) -> Consumer: ...

    async def start(self, sink: Sink) -> None:
        """Join and start reading; each partition assigned is announced
        (``sink.partition_assigned``, with the checkpoint committed with its offset if any),
        each revoked too (``sink.partition_revoked``)."""

    async def stop(self) -> None:
        """Leave (the group) and close the connections."""

    def reading(self, stopping: bool) -> bool:
        """Whether the consume loop reads on (``stopping``: the stop flag is set)."""

    def leftovers(self) -> list[dict[str, object]]:
        """What a stop now would lose in the source itself (records never read), per partition
        with its ``topic``, ``partition`` and offsets; logged at error level by the sink."""
