"""Moves records from the outbox to the output, one chunk in flight, until acknowledged.

The loop: take whatever is waiting (up to ``max_chunk``), publish it, and on acknowledgement
forget it and record metrics. While a chunk is in flight the next one accumulates, so chunk
size follows the load. ``linger`` (``kafka.linger_ms``, Kafka's ``linger.ms`` done here, where
the batches are built) lets a chunk whose oldest record is younger than that wait until it is
that old, gathering the records that arrive meanwhile: at moderate rates on a fast broker the
acknowledgement comes back so quickly that chunks hold a few records each, and the cost of a
request (aiokafka's encoding, futures, the event loop) is paid per chunk. Under load the oldest
record has waited longer already, so a full or old chunk never waits.

On :class:`OutputUnavailable` the chunk stays in the outbox: the output is restarted (retried
until it works: :class:`tradepipe.retry.RetryForever`, each failure counted in
``tradepipe_kafka_errors_total`` and logged) and everything unacknowledged is published again.
That resend can duplicate a record the broker had in fact written before failing (a lost
acknowledgement): delivery into the broker is at-least-once under broker faults, and readers
de-duplicate by (symbol, aggregate id) as the whole pipeline does.

A record the broker refuses for ever (:class:`RecordsRejected`: too large, a timestamp out of
range, invalid) is not retried: it goes to the quarantine file with its reason, is counted in
``tradepipe_trades_quarantined_total{symbol,reason}`` and logged at error level with its id;
the rest of the chunk was acknowledged and the publisher goes on. Retrying it would wedge the
pipeline for ever behind one record.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.output import OutputUnavailable, RecordsRejected, Rejection, TradeOutput
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.records import Record
from tradepipe.retry import RetryForever

log = structlog.get_logger(__name__)

AckHook = Callable[[Sequence[Record], float], None]


class Publisher:
    def __init__(
        self,
        output: TradeOutput,
        outbox: Outbox,
        metrics: ProducerMetrics,
        max_chunk: int = 5_000,
        linger: float = 0.0,
        retry: RetryForever | None = None,
        on_ack: AckHook | None = None,
        on_started: Callable[[], None] = lambda: None,
        quarantine: Quarantine | None = None,
        on_settled: Callable[[Sequence[Record]], None] = lambda _: None,
    ) -> None:
        self.output, self.outbox, self.metrics = output, outbox, metrics
        self.max_chunk, self.linger = max_chunk, linger
        self.retry = retry or RetryForever()
        self.on_ack = on_ack
        self.on_started = on_started
        self.quarantine = quarantine
        self.on_settled = on_settled  # every record done with: acknowledged or quarantined
        self.started = asyncio.Event()
        self.last_ack_at: float | None = None  # monotonic
        self.last_trade_ms: dict[str, int] = {}

    async def start_output(self) -> None:
        """Start the output, retrying until it works (cancel to give up)."""
        async for attempt in self.retry.attempts(OutputUnavailable):
            with attempt:
                try:
                    await self.output.start()
                except OutputUnavailable as exc:
                    self.metrics.kafka_errors.inc()
                    log.warning("output_start_failed", error=str(exc), attempt=attempt.num,
                                retry_in=round(attempt.next_wait, 2))  # fmt: skip
                    raise
        self.started.set()
        self.on_started()

    async def run(self) -> None:
        """Publish forever (until cancelled)."""
        if not self.started.is_set():
            await self.start_output()
        while True:
            chunk = await self.outbox.take(self.max_chunk)
            if self.linger > 0 and len(chunk) < self.max_chunk:
                chunk = await self._linger(chunk)
            rejected: list[Rejection] = []
            try:
                await self.output.publish(chunk)
            except RecordsRejected as exc:
                rejected = exc.rejected
                self._quarantine(rejected)
            except OutputUnavailable as exc:
                self.metrics.kafka_errors.inc()
                log.warning("publish_failed", error=str(exc), unacked=len(self.outbox))
                self.outbox.rewind()
                self.started.clear()
                await self.output.stop()
                await self.start_output()
                continue
            self._acked(chunk, rejected)

    async def _linger(self, chunk: list[Record]) -> list[Record]:
        """Wait until the chunk's oldest record is ``linger`` old; take what came meanwhile."""
        wait = chunk[0].received_at + self.linger - time.monotonic()
        if wait <= 0:
            return chunk
        await asyncio.sleep(wait)
        return chunk + self.outbox.take_now(self.max_chunk - len(chunk))

    def _quarantine(self, rejected: Sequence[Rejection]) -> None:
        for r in rejected:
            rec = r.record
            self.metrics.quarantined.labels(rec.symbol, r.reason).inc()
            log.error("record_quarantined", symbol=rec.symbol, agg_id=rec.agg_id,
                      trade_time_ms=rec.time_ms, bytes=len(rec.value), reason=r.reason,
                      error=r.error)  # fmt: skip
            if self.quarantine is not None:
                self.quarantine.add(r.reason, r.error, rec.value)

    def _acked(self, chunk: list[Record], rejected: Sequence[Rejection] = ()) -> None:
        now = time.time()
        self.outbox.ack(len(chunk))
        self.on_settled(chunk)
        if rejected:
            refused = {id(r.record) for r in rejected}
            chunk = [rec for rec in chunk if id(rec) not in refused]
        self.last_ack_at = time.monotonic()
        per_symbol = Counter(r.symbol for r in chunk)
        for symbol, n in per_symbol.items():
            self.metrics.produced.labels(symbol).inc(n)
        observe, internal = self.metrics.latency.observe, self.metrics.internal_latency.observe
        mono = time.monotonic()
        for rec in chunk:
            observe(max(0.0, now - rec.time_ms / 1000))
            internal(mono - rec.received_at)
        for rec in chunk:  # chunks are in id order per symbol: the last one wins
            self.last_trade_ms[rec.symbol] = rec.time_ms
        self.metrics.buffered.set(len(self.outbox))
        if self.on_ack is not None:
            self.on_ack(chunk, now)
