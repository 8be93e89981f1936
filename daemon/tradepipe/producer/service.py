"""``tradepipe produce``: the lifecycle, readable top to bottom.

:func:`serve` = start-up -> tasks in one ``TaskGroup`` -> ordered shutdown when ``stop`` is
set. Start-up resumes where the last run left off (:mod:`.resume`: the topic's tail, then the
state file) and seeds the sequencers before the feed connects. ``READY=1`` is sent once the
feed is connected; it does not wait for the broker (a producer started while Kafka is down
reads, holds within the buffer bound and delivers when the broker returns).

It handles no signals itself: :func:`run` (the command's entry point) installs handlers
that only set the flag, and tests call :func:`serve` in-process with their own event.

Shutdown order (bounded by ``shutdown_seconds``, well inside systemd's ``TimeoutStopSec``):

1. ``STOPPING=1``; stop reading: close the WebSocket connections (nothing new is accepted);
2. stop the backfiller (a page being fetched is abandoned: nothing half-applied);
3. wait until every accepted record is acknowledged by the broker (or time runs out: logged
   with the number left behind);
4. stop the publisher and the sink (flush, disconnect), write the state file, then the
   metrics server.

A task that crashes cancels the others and the exception propagates: the process exits
non-zero and systemd restarts it (``Restart=on-failure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import structlog

from tradepipe.config import Settings
from tradepipe.observability import Health, MetricsServer, Notifier
from tradepipe.producer.backfill import Backfiller
from tradepipe.producer.backoff import Backoff
from tradepipe.producer.feed import Feed, stream_url
from tradepipe.producer.intake import Intake
from tradepipe.producer.kafka import KafkaTradeSink
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.publisher import AckHook, Publisher
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.records import Record
from tradepipe.producer.rest import AggTradesClient
from tradepipe.producer.resume import resume_points
from tradepipe.producer.sink import TradeSink
from tradepipe.producer.state import StateFile

log = structlog.get_logger(__name__)


@dataclass
class Options:
    """What the environment (not the config file) decides: systemd, tests, local mode."""

    notifier: Notifier = field(default_factory=lambda: Notifier(None))
    watchdog_seconds: float | None = None  # from $WATCHDOG_USEC
    sink: TradeSink | None = None  # default: Kafka from settings.kafka
    metrics: ProducerMetrics | None = None
    serve_metrics: bool = True
    shutdown_seconds: float = 20.0
    on_ack: AckHook | None = None
    on_ready: Callable[[Producer], None] | None = None


class Producer:
    """The parts, wired; :func:`serve` runs them."""

    def __init__(
        self, settings: Settings, options: Options, last_ids: Mapping[str, int] | None = None
    ) -> None:
        feed, kafka = settings.feed, settings.kafka
        self.settings, self.options = settings, options
        self.metrics = options.metrics or ProducerMetrics()
        self.outbox = Outbox(kafka.buffer_max_messages)
        self.sink = options.sink if options.sink is not None else KafkaTradeSink(kafka)
        # resume state only with Kafka: an injected sink (local mode) keeps nothing across runs
        self.state: StateFile | None = None
        if options.sink is None:
            self.state = StateFile(feed.state_path, kafka.topic, feed.symbols, last_ids)
        self.quarantine = Quarantine(feed.quarantine_path, feed.quarantine_max_bytes)
        self.publisher = Publisher(
            self.sink, self.outbox, self.metrics,
            on_ack=options.on_ack, on_started=self._maybe_ready,
            quarantine=self.quarantine, on_settled=self._settled,
        )  # fmt: skip
        self.intake = Intake(
            feed.symbols, self.outbox, self.metrics, self.quarantine,
            max_held=int(feed.max_held), on_gap=lambda: self.backfiller.wake(),
            last_ids=last_ids,
        )  # fmt: skip
        for seq in self.intake.sequencers.values():
            seq.want_catch_up()  # resumed symbols: backfill from last_id + 1 (no-op if fresh)
        self.feed = Feed(
            stream_url(feed.ws_url, feed.symbols), self.intake, self.metrics,
            rollover_seconds=feed.rollover_seconds,
            backoff=Backoff(cap=feed.backoff_max_seconds),
            on_connected=self._maybe_ready,
        )  # fmt: skip
        self.http = aiohttp.ClientSession()
        self.backfiller = Backfiller(
            self.intake,
            AggTradesClient(feed.rest_url, self.http, self.metrics, feed.rest_weight_per_minute),
            self.outbox,
            give_up_seconds=feed.backfill_give_up_seconds,
        )
        self.started_at = time.monotonic()
        self.ready = asyncio.Event()
        self.server: MetricsServer | None = None

    def health(self) -> Health:
        """200 when connected and trades were acknowledged recently (ARCHITECTURE.md)."""
        stall = self.settings.feed.stall_seconds
        now = time.monotonic()
        if not self.feed.connected:
            return Health(False, "feed not connected")
        if not self.publisher.started.is_set():
            return Health(False, "broker not connected")
        last = self.publisher.last_ack_at or self.started_at
        if now - last > stall:
            return Health(
                False,
                f"no trade acknowledged for {now - last:.0f} s "
                f"({len(self.outbox)} buffered, last message {self._since_message(now)})",
            )
        return Health(True, f"ok: {len(self.outbox)} buffered")

    def _since_message(self, now: float) -> str:
        at = self.intake.last_message_at
        return "never" if at is None else f"{now - at:.0f} s ago"

    def _settled(self, records: Sequence[Record]) -> None:
        if self.state is not None:
            self.state.note(records)

    def _maybe_ready(self) -> None:
        # not waiting for the broker: systemd's start timeout must not kill a producer that
        # reads and holds trades while Kafka is down (README "Kafka down at start")
        if self.ready.is_set() or not self.feed.connected:
            return
        self.ready.set()
        self.options.notifier.ready(f"producing {','.join(self.settings.feed.symbols)}")
        log.info("ready", symbols=self.settings.feed.symbols)
        if self.options.on_ready is not None:
            self.options.on_ready(self)

    async def watchdog(self, interval: float) -> None:
        """``WATCHDOG=1`` while the event loop runs; the loop being alive is what systemd
        can fix by restarting: a stalled *feed* shows in /healthz instead, since a restart
        would drop the buffer and help nothing."""
        while True:
            if self.options.watchdog_seconds is not None:
                self.options.notifier.watchdog()
            self.metrics.buffered.set(len(self.outbox))
            for symbol, ms in self.publisher.last_trade_ms.items():
                self.metrics.last_trade_age.labels(symbol).set(max(0.0, time.time() - ms / 1000))
            await asyncio.sleep(interval)


async def serve(settings: Settings, stop: asyncio.Event, options: Options | None = None) -> int:
    """Run the producer until ``stop`` is set; returns the exit status (0 after a clean stop)."""
    options = options or Options()
    metrics = options.metrics or ProducerMetrics()
    options = dataclasses.replace(options, metrics=metrics)
    log.info("starting", symbols=settings.feed.symbols, ws=settings.feed.ws_url,
             rest=settings.feed.rest_url, topic=settings.kafka.topic,
             buffer_max=settings.kafka.buffer_max_messages)  # fmt: skip
    last_ids = await resume_points(settings, metrics) if options.sink is None else {}
    p = Producer(settings, options, last_ids)
    server = p.server = MetricsServer(p.metrics.registry, p.health, settings.metrics.listen)
    if options.serve_metrics:
        await server.start()
        log.info("metrics_listening", url=server.url)
    left = 0
    try:
        async with asyncio.TaskGroup() as tg:
            # the broker connection and the feed start together; READY=1 once both are up (the
            # outbox holds early trades meanwhile)
            publishing = tg.create_task(p.publisher.run(), name="publisher")
            reading = tg.create_task(p.feed.run(), name="feed")
            backfilling = tg.create_task(p.backfiller.run(), name="backfill")
            ticking = tg.create_task(p.watchdog(options.watchdog_seconds or 5.0), name="tick")
            if p.state is not None:
                saving = tg.create_task(p.state.run(), name="state")
            await stop.wait()
            # -- ordered shutdown (module docstring) --
            options.notifier.stopping("flushing to the broker")
            log.info("stopping", buffered=len(p.outbox))
            p.feed.stop()
            await reading
            backfilling.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.outbox.wait_empty(), options.shutdown_seconds)
            left = len(p.outbox)
            publishing.cancel()
            ticking.cancel()
            if p.state is not None:
                saving.cancel()
    finally:
        await p.sink.stop()
        if p.state is not None and p.state.flush():
            log.info("state_saved", path=str(p.state.path), last_acked=p.state.last_acked)
        await p.http.close()
        if options.serve_metrics:
            await server.stop()
    if left:
        log.error("stopped_with_unflushed_trades", unflushed=left)
        return 1
    log.info("stopped", produced=_total(p.metrics))
    return 0


def _total(metrics: ProducerMetrics) -> int:
    return int(sum(s.value for m in metrics.produced.collect() for s in m.samples
                   if s.name.endswith("_total")))  # fmt: skip
