"""``tradepipe run``: every stage of the pipeline in one process, on embedded defaults.

    feed (Binance, or the replay emulator)          tradepipe.producer  (unchanged)
      -> broker: in-process log | Kafka              local.broker       | producer.kafka
      -> minute objects: local folder | S3           tradepipe.sink     (Sink, writers)
      -> upsert into trade_minutes: SQLite | MySQL   local.loader -> tradepipe.store
      -> dashboard                                   tradepipe.dashboard

Each stand-in is swapped for the real component by configuration alone, one explicit key each:
``local.broker = "kafka"`` -> Kafka (:class:`Plan`); ``sink.objects = "s3"`` -> S3
(``s3.endpoint_url`` for S3-compatible servers); ``db.url = mysql://...`` -> MySQL. The command
loads the settings on :data:`tradepipe.config.RUN_DEFAULTS` (sink grace 1 s, objects in
``sink.objects_dir``).

Lifecycle (:func:`serve`): migrate the database -> start the dashboard -> run the stages in one
``TaskGroup`` until ``stop`` is set -> shut down in pipeline order, so nothing accepted is lost:

1. the producer stops reading and publishes everything it accepted to the broker;
2. the in-process broker closes; the sink reads the rest, writes every object it holds and
   commits (with Kafka, the sink stops reading and writes what it holds; anything not yet
   consumed stays in Kafka, committed offsets say where to resume);
3. the loader upserts every object written (bounded: keys left over are logged);
4. the dashboard stops.

A stage that crashes cancels the others and the exception propagates (exit status 1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry

from tradepipe.config import Settings
from tradepipe.dashboard import DashboardServer, open_reader
from tradepipe.local.broker import LocalBroker, LocalConsumer
from tradepipe.local.loader import NotifyingWriter, ObjectLoader
from tradepipe.producer import Options, ProducerMetrics
from tradepipe.producer import serve as serve_producer
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer
from tradepipe.sink.service import POLL_MS, Sink
from tradepipe.store import Store, connect, migrate, parse_db_url

log = structlog.get_logger("tradepipe.local")

LOADER_SHUTDOWN_SECONDS = 30.0
SINK_SHUTDOWN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    """Which real components replace the embedded stand-ins."""

    kafka: bool = False  # else the in-process broker
    dashboard: bool = True

    def describe(self, settings: Settings) -> dict[str, str]:
        s3 = settings.s3
        return {
            "feed": settings.feed.ws_url,
            "broker": f"kafka {settings.kafka.bootstrap_servers}" if self.kafka else "in-process",
            "objects": f"s3://{s3.bucket}/{s3.prefix}"
            + (f" at {s3.endpoint_url}" if s3.endpoint_url else "")
            if settings.sink.objects == "s3"
            else settings.sink.objects_dir,
            "db": str(parse_db_url(settings.db.url)),
        }


@dataclass
class Running:
    """What a running pipeline exposes to its caller (the command prints it, tests use it)."""

    settings: Settings
    dashboard: DashboardServer | None
    loader: ObjectLoader
    broker: LocalBroker | None
    registry: CollectorRegistry


def migrate_db(url: str) -> list[str]:
    """Apply pending migrations (SQLite or MySQL); returns the names applied now."""
    conn = connect(parse_db_url(url))
    try:
        return [m.name for m in migrate(conn)]
    finally:
        conn.close()


@asynccontextmanager
async def open_objects(settings: Settings) -> AsyncIterator[ObjectWriter]:
    s3 = settings.s3
    if settings.sink.objects == "s3":
        async with S3Writer.open(s3.bucket, s3.endpoint_url, s3.region) as writer:
            yield writer
    else:
        yield LocalWriter(settings.sink.objects_dir)


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    plan: Plan | None = None,
    on_ready: Callable[[Running], None] | None = None,
) -> int:
    """Run the pipeline until ``stop`` is set; returns the exit status (0 after a clean stop)."""
    plan = plan or Plan()
    applied = await asyncio.to_thread(migrate_db, settings.db.url)
    log.info("starting", migrations_applied=applied, **plan.describe(settings))
    registry = CollectorRegistry()
    store = Store(settings.db.url)
    loader = ObjectLoader(store)
    broker = (
        None
        if plan.kafka
        else LocalBroker(settings.kafka.topic, settings.local.broker_max_messages)
    )
    status = 0
    async with AsyncExitStack() as stack:
        stack.push_async_callback(loader.close_store)
        writer = NotifyingWriter(await stack.enter_async_context(open_objects(settings)), loader)
        dashboard = None
        if plan.dashboard:
            dashboard = DashboardServer(open_reader(settings.db.url), settings.dashboard.listen)
            await stack.enter_async_context(dashboard)
        running = Running(settings, dashboard, loader, broker, registry)
        producer_stop, sink_stop = asyncio.Event(), asyncio.Event()
        producer_options = Options(output=broker, metrics=ProducerMetrics(registry))
        async with asyncio.TaskGroup() as tg:
            producing = tg.create_task(
                serve_producer(settings, producer_stop, producer_options), name="producer"
            )
            if broker is not None:
                sinking = tg.create_task(
                    _sink_local(settings, broker, writer, SinkMetrics(registry)), name="sink"
                )
            else:
                sinking = tg.create_task(
                    _sink_kafka(settings, writer, SinkMetrics(registry), sink_stop), name="sink"
                )
            loading = tg.create_task(loader.run(), name="loader")
            log.info("running", dashboard=dashboard.url if dashboard else None)
            if on_ready is not None:
                on_ready(running)
            await stop.wait()
            # -- ordered shutdown (module docstring) --
            log.info("stopping")
            producer_stop.set()
            status |= await producing  # 1: the producer could not hand everything over
            if broker is not None:
                await broker.close()
            sink_stop.set()
            status |= await sinking
            loader.close()
            try:
                async with asyncio.timeout(LOADER_SHUTDOWN_SECONDS):
                    await loading
            except TimeoutError:
                loading.cancel()
                log.error("stopped_with_unloaded_objects", keys=loader.unloaded_keys())
                status = 1
    s = loader.stats
    log.info("stopped", objects=s.objects, trades=s.trades, added=s.added, rows=s.rows)
    return status


async def _sink_local(
    settings: Settings, broker: LocalBroker, writer: ObjectWriter, metrics: SinkMetrics
) -> int:
    """The sink's own batching and flushing (:class:`Sink`), fed from the in-process broker
    until it is closed and read to the end; then everything held is written (a cut)."""
    consumer = LocalConsumer(broker)
    sink = Sink(settings, consumer, writer, metrics)  # LocalConsumer: the calls Sink makes
    sink.new_batcher(broker.tp, None)
    while not consumer.drained:
        records = await consumer.getmany(timeout_ms=POLL_MS)
        sink.last_loop = time.monotonic()
        await sink.consume(records)
        await sink.idle(set(records))
    try:
        async with asyncio.timeout(SINK_SHUTDOWN_SECONDS):
            await sink.drain()
    except TimeoutError:
        log.error("sink_drain_timeout", seconds=SINK_SHUTDOWN_SECONDS)
        return 1
    return 0


async def _sink_kafka(
    settings: Settings, writer: ObjectWriter, metrics: SinkMetrics, stop: asyncio.Event
) -> int:
    """``tradepipe sink`` itself, on our writer (so the loader hears of every object)."""
    from tradepipe.sink.service import run as run_sink

    return await run_sink(settings, stop=stop, handle_signals=False, metrics=metrics, writer=writer)
