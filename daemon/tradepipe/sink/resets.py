"""Offset resets made visible: the sink's Kafka consumer never resets an offset silently.

The topic keeps records for minutes (``retention.ms``). A sink that is down (or paused at its
spool's bound) for longer finds its committed offset -- or the position it had read to --
already deleted:
the broker answers the fetch with ``OFFSET_OUT_OF_RANGE``. aiokafka would then reset the
position per ``auto_offset_reset`` without telling anyone (``"earliest"``: to the log start,
skipping every deleted record). So the sink's consumer runs with ``auto_offset_reset="none"``,
under which aiokafka raises instead (from ``getmany``, one partition per call, after handing
out what other partitions had fetched): :class:`ResettingConsumer` catches it and

- ``NoOffsetForPartitionError`` (the group has no committed offset for the partition: a first
  start): seeks to the beginning, as ``"earliest"`` would. Nothing is skipped; no alarm.
- ``OffsetOutOfRangeError`` (it carries the fetch offset): reads the partition's log start and
  end (if that fails, the position stays and the next fetch fails and measures again). Fetch
  offset below the log start: the records in between were deleted unread -- an *offset reset*,
  resumed at the log start. Above the log end: the log was truncated or the topic re-created --
  also a reset, resumed at the log start, with the number skipped unknown (counted as 0).
  Within the log (a transient answer, e.g. during a leader change): seeks to the
  fetch offset again; no alarm.

A reset is counted (``tradepipe_sink_offset_resets_total{partition}``, and the offsets it
skipped in ``tradepipe_sink_records_skipped_total{partition}``: the records deleted unread,
exact since the sink commits right after spooling -- an upper bound only at the first start
after an upgrade from a sink without a spool, whose checkpoint's replay window holds records
already written), logged at error level
(``offset_reset``: topic, partition, committed offset, fetch offset, new offset, skipped), and
latched on the sink (:meth:`~.service.Sink.offset_reset`) so ``/healthz`` answers 503 with the
reason until the process is restarted -- the restart is the acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from aiokafka.structs import OffsetAndMetadata

from tradepipe.sink.consumer import Message

log = structlog.get_logger("tradepipe.sink")


@dataclass(frozen=True, slots=True)
class OffsetReset:
    """One reset: the partition resumed at ``new_offset`` instead of ``fetch_offset``."""

    topic: str
    partition: int
    committed: int | None  # the group's committed offset when it was found (None: none)
    fetch_offset: int  # the offset the consumer asked for
    new_offset: int  # where it resumed: the log start
    log_end: int
    skipped: int | None  # records deleted unread; None: unknown (the log was truncated)

    @property
    def reason(self) -> str:
        where = f"{self.topic}/{self.partition}"
        if self.skipped is None:
            return (
                f"offset reset on {where}: offset {self.fetch_offset} is past the log end "
                f"{self.log_end} (log truncated or topic re-created), resumed at "
                f"{self.new_offset}; restart to acknowledge"
            )
        return (
            f"offset reset on {where}: offset {self.fetch_offset} was deleted by retention, "
            f"{self.skipped} records skipped, resumed at {self.new_offset}; restart to acknowledge"
        )


class ResettingConsumer:
    """The sink's :class:`~.consumer.Consumer` over an ``AIOKafkaConsumer`` created with
    ``auto_offset_reset="none"``: out-of-range offsets are handled as the module says, each
    reset passed to ``on_reset``."""

    def __init__(self, aiokafka: Any, on_reset: Callable[[OffsetReset], None]) -> None:
        self._c = aiokafka  # aiokafka has no type stubs
        self._on_reset = on_reset

    async def getmany(self, *, timeout_ms: int = 0) -> Mapping[TopicPartition, Sequence[Message]]:
        try:
            records: Mapping[TopicPartition, Sequence[Message]] = await self._c.getmany(
                timeout_ms=timeout_ms
            )
            return records
        except NoOffsetForPartitionError as exc:
            tp = exc.args[0]
            if tp in self._c.assignment():
                log.info("no_committed_offset", topic=tp.topic, partition=tp.partition)
                await self._c.seek_to_beginning(tp)
        except OffsetOutOfRangeError as exc:
            offsets: dict[TopicPartition, int] = exc.args[0]
            for tp, offset in offsets.items():
                if tp in self._c.assignment():
                    await self._out_of_range(tp, offset)
        return {}

    async def _out_of_range(self, tp: TopicPartition, offset: int) -> None:
        try:
            start = (await self._c.beginning_offsets([tp]))[tp]
            end = (await self._c.end_offsets([tp]))[tp]
        except KafkaError as exc:
            # The position is left as it is: the fetch is retried, fails the same way, and
            # the measurement is tried again -- no reset goes unmeasured, nothing crashes.
            log.warning(
                "offset_out_of_range_unmeasured",
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                error=repr(exc),
            )
            return
        if start <= offset <= end:
            log.warning(
                "offset_out_of_range_transient",
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                log_start=start,
                log_end=end,
            )
            self._c.seek(tp, offset)
            return
        committed: int | None = None
        try:
            committed = await self._c.committed(tp)
        except KafkaError as exc:  # only for the log line
            log.warning("committed_offset_unknown", partition=tp.partition, error=repr(exc))
        reset = OffsetReset(
            tp.topic,
            tp.partition,
            committed,
            offset,
            start,
            end,
            start - offset if offset < start else None,
        )
        self._c.seek(tp, start)
        log.error(
            "offset_reset",
            topic=tp.topic,
            partition=tp.partition,
            committed_offset=committed,
            fetch_offset=offset,
            new_offset=start,
            log_end=end,
            skipped=reset.skipped,
            reason=reset.reason,
        )
        self._on_reset(reset)

    def assignment(self) -> AbstractSet[TopicPartition]:
        tps: AbstractSet[TopicPartition] = self._c.assignment()
        return tps

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._c.seek(partition, offset)

    def highwater(self, partition: TopicPartition) -> int | None:
        end: int | None = self._c.highwater(partition)
        return end

    async def position(self, partition: TopicPartition) -> int:
        pos: int = await self._c.position(partition)
        return pos

    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        await self._c.commit(offsets)

    def pause(self, *partitions: TopicPartition) -> None:
        self._c.pause(*partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._c.resume(*partitions)
