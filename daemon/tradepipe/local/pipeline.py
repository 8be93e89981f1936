"""``tradepipe run``: every stage of the pipeline in one process, on embedded defaults.

    feed (Binance, or the replay emulator)          tradepipe.producer  (unchanged)
      -> broker: in-process log | Kafka              local.broker       | producer.kafka
      -> minute objects: local folder | S3           tradepipe.sink     (serve, unchanged)
      -> upsert into trade_minutes: SQLite | MySQL   local.loader -> tradepipe.store
      -> dashboard                                   tradepipe.dashboard
      verify closed minutes against feed.rest_url     tradepipe.verify.service

Each stand-in is swapped for the real component by configuration alone, one explicit key each:
``local.broker = "kafka"`` -> Kafka; ``sink.objects = "s3"`` -> S3
(``s3.endpoint_url`` for S3-compatible servers); ``db.url = mysql://...`` -> MySQL. The command
loads the settings on :data:`tradepipe.config.RUN_DEFAULTS` (sink grace 1 s, objects in
``sink.objects_dir``).

The producer and the sink are the services themselves (``producer.serve`` and ``sink.serve``,
each on its own stop flag); local mode only chooses their parts through their ``Options``: the
in-process broker is the producer's output and the sink's record source
(:class:`~tradepipe.local.broker.LocalSource`), and the sink's writer also hands each object to
the loader.

Lifecycle (:func:`serve`): migrate the database -> start the dashboard -> run the stages in one
``TaskGroup`` until ``stop`` is set -> shut down in pipeline order, so nothing accepted is lost:

1. the producer stops reading and publishes everything it accepted to the broker;
2. the in-process broker closes; the sink reads the rest, writes every object it holds and
   commits (with Kafka, the sink stops reading and writes what it holds; anything not yet
   consumed stays in Kafka, committed offsets say where to resume) -- within
   ``SINK_SHUTDOWN_SECONDS``, else what it could not write is logged and the status is 1;
3. the loader upserts every object written (bounded: keys left over are logged);
4. the dashboard stops.

The background verify (``verify.interval_seconds``; :mod:`tradepipe.verify.service`) stops
first, before the producer: it only reads and repairs what is already stored.

A stage that crashes cancels the others and the exception propagates (exit status 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry

from tradepipe.config import Settings
from tradepipe.dashboard import DashboardServer, open_reader
from tradepipe.local.broker import LocalBroker, LocalSource
from tradepipe.local.loader import NotifyingWriter, ObjectLoader
from tradepipe.producer import Options, ProducerMetrics
from tradepipe.producer import serve as serve_producer
from tradepipe.sink import Options as SinkOptions
from tradepipe.sink import open_writer
from tradepipe.sink import serve as serve_sink
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.store import Store, connect, migrate, parse_db_url
from tradepipe.verify.metrics import VerifyMetrics
from tradepipe.verify.service import Options as VerifyOptions
from tradepipe.verify.service import serve as serve_verify

log = structlog.get_logger("tradepipe.local")

LOADER_SHUTDOWN_SECONDS = 30.0
SINK_SHUTDOWN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What the command line decides beyond the settings (the components are settings:
    ``local.broker``, ``sink.objects``, ``db.url``)."""

    dashboard: bool = True

    def describe(self, settings: Settings) -> dict[str, str]:
        s3 = settings.s3
        return {
            "feed": settings.feed.ws_url,
            "broker": f"kafka {settings.kafka.bootstrap_servers}"
            if settings.local.broker == "kafka"
            else "in-process",
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
        if settings.local.broker == "kafka"
        else LocalBroker(settings.kafka.topic, settings.local.broker_max_messages)
    )
    status = 0
    async with AsyncExitStack() as stack:
        stack.push_async_callback(loader.close_store)
        # sink.objects: the folder sink.objects_dir (the run default) or S3
        writer = NotifyingWriter(await stack.enter_async_context(open_writer(settings)), loader)
        dashboard = None
        if plan.dashboard:
            dashboard = DashboardServer(open_reader(settings.db.url), settings.dashboard.listen)
            await stack.enter_async_context(dashboard)
        running = Running(settings, dashboard, loader, broker, registry)
        producer_stop, sink_stop, verify_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        producer_options = Options(output=broker, metrics=ProducerMetrics(registry))
        sink_options = SinkOptions(
            writer=writer,
            metrics=SinkMetrics(registry),
            shutdown_seconds=SINK_SHUTDOWN_SECONDS,
            # the in-process broker: no group, and no metrics server of the sink's own
            source=None if broker is None else LocalSource(broker),
            serve_metrics=broker is None,
        )
        async with asyncio.TaskGroup() as tg:
            producing = tg.create_task(
                serve_producer(settings, producer_stop, producer_options), name="producer"
            )
            sinking = tg.create_task(serve_sink(settings, sink_stop, sink_options), name="sink")
            loading = tg.create_task(loader.run(), name="loader")
            verifying = tg.create_task(
                serve_verify(settings, verify_stop, VerifyOptions(VerifyMetrics(registry))),
                name="verify",
            )
            log.info("running", dashboard=dashboard.url if dashboard else None)
            if on_ready is not None:
                on_ready(running)
            await stop.wait()
            # -- ordered shutdown (module docstring) --
            log.info("stopping")
            verify_stop.set()
            status |= await verifying
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
