"""Where accepted trades are published: the :class:`TradeOutput` interface.

The producer talks to its broker only through this small protocol, so local mode
(``tradepipe run``) can plug an in-process broker where production uses Kafka
(:class:`tradepipe.producer.kafka.KafkaOutput`) without touching the feed or backfill code.

An output must keep the order of the records it is given per symbol, and ``publish`` must return
only once every record is durably accepted (Kafka: acknowledged with ``acks=all``). Failures the
publisher should retry are raised as :class:`OutputUnavailable`; the publisher then restarts the
output (``stop`` then ``start``) and publishes every unacknowledged record again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tradepipe.producer.records import Record


class OutputUnavailable(Exception):
    """The broker cannot take records right now; retry later (the records are kept)."""


@dataclass(frozen=True)
class Rejection:
    """One record the broker refuses for ever, and why (``reason`` is a metric label)."""

    record: Record
    reason: str
    error: str


class RecordsRejected(Exception):
    """Some records of a chunk can never be written (a non-retriable, per-record refusal);
    every *other* record of the chunk was acknowledged. The publisher quarantines these."""

    def __init__(self, rejected: Sequence[Rejection]) -> None:
        super().__init__(f"{len(rejected)} record(s) refused by the broker")
        self.rejected = list(rejected)


class TradeOutput(Protocol):
    async def start(self) -> None:
        """Connect (create the topic if needed). Raises :class:`OutputUnavailable`."""

    async def publish(self, records: Sequence[Record]) -> None:
        """Publish in order; return once all are acknowledged. Raises :class:`OutputUnavailable`
        (retry everything) or :class:`RecordsRejected` (the rest was acknowledged)."""

    async def stop(self) -> None:
        """Flush what is pending and disconnect; must not raise for an unreachable broker."""
