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
   the intake opens its last epoch, so REST answers from now on can end catch-ups;
2. let the backfiller finish what is missing (held trades' gaps, catch-ups), for at most
   three quarters of the time; then stop it (a page being fetched is abandoned);
3. wait until every accepted record is acknowledged by the broker (or time runs out);
4. stop the publisher and the output (flush, disconnect), write the state file, then the
   metrics server.

Whatever is left behind (held trades, ranges still missing, records not acknowledged) is
logged at error level per symbol with its ids (``shutdown_left_behind``) and in one summary
with the counts (``stopped_with_leftovers``), and the exit status is 1: "stopped" with 0 means
nothing was left. (Trades of the downtime itself are the next start's business: it resumes.)

Every task's death is fatal: one that crashes or returns cancels the others and the process
exits non-zero (systemd restarts it, ``Restart=on-failure``) — a dead reader is the exception,
recovered by a new connection inside the feed. The tasks are cancelled until they are done
(a task swallowing its one cancellation must not keep the process alive and deaf to SIGTERM).

Health: ``/healthz`` answers 503 with the reason when Binance refuses the region (451), the
feed or the broker is not connected, the backfill is failing, or the pipeline is *stalled*.
Stalled means work is waiting and nothing moves for ``feed.stall_seconds``: records in the
buffer and no acknowledgement while the broker is connected, ranges missing and no REST try,
no connection and no attempt. A quiet market (nothing waiting) is healthy. ``WATCHDOG=1`` is
withheld while stalled (for 4 x ``kafka.request_timeout_ms`` longer: the broker client's own
time to notice a dead broker), so systemd restarts a wedged process (and the restart
resumes); outages of Binance or Kafka are not stalls (a restart would fix nothing), only
/healthz says.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import structlog

from tradepipe.config import Settings
from tradepipe.observability import Health, MetricsServer, Notifier
from tradepipe.producer.backfill import Backfiller
from tradepipe.producer.geoblock import GeoBlock
from tradepipe.producer.intake import Intake
from tradepipe.producer.kafka import KafkaOutput
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.output import TradeOutput
from tradepipe.producer.publisher import AckHook, Publisher
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.records import Record
from tradepipe.producer.rest import AggTradesClient, RestError
from tradepipe.producer.resume import resume_points
from tradepipe.producer.shards import Shards
from tradepipe.producer.state import StateFile
from tradepipe.producer.symbols import NoSymbols, SymbolWatcher, resolve

log = structlog.get_logger(__name__)


@dataclass
class Options:
    """What the environment (not the config file) decides: systemd, tests, local mode."""

    notifier: Notifier = field(default_factory=lambda: Notifier(None))
    watchdog_seconds: float | None = None  # from $WATCHDOG_USEC
    output: TradeOutput | None = None  # default: Kafka from settings.kafka
    metrics: ProducerMetrics | None = None
    serve_metrics: bool = True
    shutdown_seconds: float = 20.0
    on_ack: AckHook | None = None
    on_ready: Callable[[Producer], None] | None = None


class Producer:
    """The parts, wired; :func:`serve` runs them."""

    def __init__(
        self,
        settings: Settings,
        options: Options,
        last_ids: Mapping[str, int] | None = None,
        symbols: Sequence[str] | None = None,
    ) -> None:
        """``symbols``: what ``feed.symbols = *`` resolved to (else ``feed.symbols``)."""
        feed, kafka = settings.feed, settings.kafka
        self.settings, self.options = settings, options
        self.symbols = [s.upper() for s in (feed.symbols if symbols is None else symbols)]
        self.metrics = options.metrics or ProducerMetrics()
        self.outbox = Outbox(kafka.buffer_max_messages)
        self.output = options.output if options.output is not None else KafkaOutput(kafka)
        # resume state only with Kafka: an injected output (local mode) keeps nothing across runs
        self.state: StateFile | None = None
        if options.output is None:
            self.state = StateFile(feed.state_path, kafka.topic, self.symbols, last_ids)
        self.quarantine = Quarantine(feed.quarantine_path, feed.quarantine_max_bytes)
        self.publisher = Publisher(
            self.output, self.outbox, self.metrics,
            # an injected output (local mode's in-process broker) has no request to save
            linger=kafka.linger_ms / 1000 if options.output is None else 0.0,
            on_ack=options.on_ack, on_started=self._maybe_ready,
            quarantine=self.quarantine, on_settled=self._settled,
        )  # fmt: skip
        self.intake = Intake(
            self.symbols, self.outbox, self.metrics, self.quarantine,
            max_held=int(feed.max_held), on_gap=lambda: self.backfiller.wake(),
        )  # fmt: skip
        self.geo = GeoBlock()
        self.feed = Shards(
            feed.ws_url, self.symbols, feed.max_streams_per_connection, self.intake,
            self.metrics, rollover_seconds=feed.rollover_seconds,
            backoff_cap=feed.backoff_max_seconds, on_connected=self._maybe_ready, geo=self.geo,
        )  # fmt: skip
        self.http = aiohttp.ClientSession()
        self.rest = AggTradesClient(
            feed.rest_url, self.http, self.metrics, feed.rest_weight_per_minute, geo=self.geo
        )
        self.watcher: SymbolWatcher | None = None
        if feed.by_rule:
            self.watcher = SymbolWatcher(
                self.rest, feed.quote_assets, feed.symbols_refresh_seconds, self.metrics,
                current=lambda: self.feed.symbols, listed=self.add_symbols,
                delisted=self.remove_symbols,
            )  # fmt: skip
        self.backfiller = Backfiller(
            self.intake,
            self.rest,
            give_up_seconds=feed.backfill_give_up_seconds,
            retry_cap=min(30.0, max(0.5, feed.backfill_give_up_seconds / 4)),
        )
        # a restart: each symbol starts where it left off and catches up (producer/resume.py)
        self.intake.resume(last_ids or {})
        self.started_at = time.monotonic()
        self.ready = asyncio.Event()
        self.server: MetricsServer | None = None

    def health(self) -> Health:
        """200 when connected, nothing failing and nothing stalled (module docstring)."""
        now = time.monotonic()
        if (geo := self.geo.reason) is not None:
            return Health(False, geo)
        if not self.feed.connected:
            down = self.feed.not_connected()
            return Health(False, "feed not connected" + (f": {', '.join(down)}" if down else ""))
        if not self.publisher.started.is_set():
            return Health(False, "broker not connected")
        if (why := self.stalled(now)) is not None:
            return Health(False, f"stalled: {why}")
        if self.backfiller.failing:
            failing = "; ".join(f"{s}: {e}" for s, e in sorted(self.backfiller.failing.items()))
            return Health(False, f"backfill failing ({failing})")
        waiting = len(self.outbox)
        quiet = "" if waiting or self.missing_symbols() else ", quiet: nothing waiting"
        return Health(True, f"ok: {waiting} buffered, last message {self._since_message(now)}"
                            f"{quiet}")  # fmt: skip

    def stalled(self, now: float, grace: float = 0.0) -> str | None:
        """Why the pipeline is wedged: work waiting and its stage not moving for
        ``feed.stall_seconds`` (+ ``grace``); ``None`` otherwise (a quiet market, an outage
        being retried)."""
        stall = self.settings.feed.stall_seconds + grace

        def idle(at: float | None) -> float:
            return now - (at if at is not None else self.started_at)

        waiting = len(self.outbox)
        since_ack, oldest = idle(self.publisher.last_ack_at), idle(self.outbox.oldest_at)
        if waiting and self.publisher.started.is_set() and min(since_ack, oldest) > stall:
            last = self._since_message(now)
            return (f"no trade acknowledged for {since_ack:.0f} s with {waiting} waiting, "
                    f"the oldest for {oldest:.0f} s (last message {last})")  # fmt: skip
        since_try = idle(self.backfiller.last_try_at)
        missing = self.missing_symbols()
        if missing and not self.backfiller.failing and since_try > stall:
            if self.intake.room >= self.intake.page_limit():
                return f"ids missing ({', '.join(missing)}) and no REST try for {since_try:.0f} s"
        since_attempt = idle(self.feed.last_attempt_at)
        limit = stall + self.settings.feed.backoff_max_seconds + self.feed.open_timeout
        if not self.feed.connected and since_attempt > limit:
            return f"not connected and no connection attempt for {since_attempt:.0f} s"
        return None

    async def add_symbols(self, symbols: list[str]) -> None:
        """Symbols listed while running (:mod:`.symbols` rule 3): a sequencer each, starting
        where its REST history starts (at most ``feed.max_resume_trades`` back), so its trades
        from the listing on are fetched; then subscribed. A retired symbol taken up again
        catches up from where it stopped."""
        for symbol in symbols:
            last_id = None
            if symbol not in self.intake.sequencers:
                last_id = await self._listing_start(symbol)
            self.intake.add_symbol(symbol, last_id)
        self.feed.add(symbols)

    def remove_symbols(self, symbols: list[str]) -> None:
        """Symbols delisted: unsubscribed; what they still miss is filled and reported."""
        self.feed.remove(symbols)
        for symbol in symbols:
            self.intake.retire(symbol)

    async def _listing_start(self, symbol: str, tries: int = 3) -> int | None:
        """The id before the first trade to fetch of a newly listed ``symbol``; ``None`` (from
        its first live trade on) if it never traded or REST cannot tell (logged)."""
        for attempt in range(1, tries + 1):
            try:
                newest = await self.rest.newest(symbol)
                if not newest:
                    return None
                oldest = await self.rest.fetch(symbol, 0, 1)
                last, first = newest[-1].get("a"), oldest[0].get("a") if oldest else None
                if type(last) is not int or type(first) is not int:
                    raise RestError(f"aggTrades of {symbol}: no integer ids")
            except (RestError, AttributeError) as exc:
                log.warning("listing_start_failed", symbol=symbol, attempt=attempt, error=str(exc))
                await asyncio.sleep(attempt)
                continue
            start = max(first, last - int(self.settings.feed.max_resume_trades) + 1)
            if start > first:
                log.warning("listing_history_cut", symbol=symbol, first=first, start=start,
                            why="feed.max_resume_trades")  # fmt: skip
            return start - 1
        log.error("listing_start_unknown", symbol=symbol,
                  why="REST failed: trades before its first live one are not fetched")  # fmt: skip
        return None

    def missing_symbols(self) -> list[str]:
        return [s for s, seq in self.intake.sequencers.items() if seq.missing() is not None]

    def leftovers(self) -> list[dict[str, object]]:
        """Per symbol, what a stop now would leave behind: held trades, missing ids, records
        not acknowledged (with their ids)."""
        out: list[dict[str, object]] = []
        unacked = self.outbox.unacked()
        for symbol, seq in self.intake.sequencers.items():
            item: dict[str, object] = {}
            if (held := seq.held_range()) is not None:
                item.update(held=seq.held, held_ids=f"{held[0]}-{held[1]}")
            if (missing := seq.missing()) is not None:
                first, until = missing
                item["missing_ids"] = f"{first}-" + ("(open: catch-up)" if until is None
                                                     else str(until))  # fmt: skip
                if until is not None:
                    item["missing"] = until - first + 1
            if symbol in unacked:
                n, lo, hi = unacked[symbol]
                item.update(unflushed=n, unflushed_ids=f"{lo}-{hi}")
            if item:
                out.append({"symbol": symbol, **item})
        return out

    def _since_message(self, now: float) -> str:
        at = self.intake.last_message_at
        return "never" if at is None else f"{now - at:.0f} s ago"

    def _settled(self, records: Sequence[Record]) -> None:
        if self.state is not None:
            self.state.note(records)

    def _maybe_ready(self) -> None:
        # not waiting for the broker: systemd's start timeout must not kill a producer that
        # reads and holds trades while Kafka is down (docs/operations.md, "Kafka down at start")
        if self.ready.is_set() or not self.feed.connected:
            return
        self.ready.set()
        names = (
            ",".join(self.symbols) if len(self.symbols) <= 10 else f"{len(self.symbols)} symbols"
        )
        self.options.notifier.ready(f"producing {names}")
        log.info("ready", symbols=len(self.symbols), connections=len(self.feed.feeds))
        if self.options.on_ready is not None:
            self.options.on_ready(self)

    async def watchdog(self, interval: float) -> None:
        """``WATCHDOG=1`` while the pipeline makes progress (module docstring): withheld while
        :meth:`stalled`, so systemd restarts a wedged process; sent through outages of Binance
        or Kafka (a restart would fix nothing; /healthz says what is wrong)."""
        reported = False
        # the broker client notices a dead broker itself after 4 x request_timeout (it then
        # reports "not connected", an outage): the watchdog waits that out before it calls a
        # stall a wedge
        grace = 4 * self.settings.kafka.request_timeout_ms / 1000
        while True:
            now = time.monotonic()
            why = self.stalled(now, grace)
            if why is None:
                reported = False
                if self.options.watchdog_seconds is not None:
                    self.options.notifier.watchdog()
            elif not reported:
                reported = True
                log.error("pipeline_stalled", why=why, watchdog="withheld")
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
    symbols = list(settings.feed.symbols)
    if settings.feed.by_rule:  # feed.symbols = * (producer/symbols.py rule 2)
        async with aiohttp.ClientSession() as http:
            client = AggTradesClient(settings.feed.rest_url, http, metrics,
                                     settings.feed.rest_weight_per_minute)  # fmt: skip
            try:
                symbols = await resolve(client, settings.feed.quote_assets,
                                        settings.feed.resume_timeout_seconds, metrics)  # fmt: skip
            except NoSymbols as exc:
                log.error("no_symbols", error=str(exc))
                return 1
    resolved = settings.replace(feed={"symbols": symbols, "quote_assets": []})
    last_ids = await resume_points(resolved, metrics) if options.output is None else {}
    p = Producer(settings, options, last_ids, symbols)
    server = p.server = MetricsServer(p.metrics.registry, p.health, settings.metrics.listen)
    if options.serve_metrics:
        await server.start()
        log.info("metrics_listening", url=server.url)
    status = 0
    try:
        async with asyncio.TaskGroup() as tg:
            # the broker connection and the feed start together; READY=1 once both are up (the
            # outbox holds early trades meanwhile)
            tasks = {
                "publisher": tg.create_task(p.publisher.run(), name="publisher"),
                "feed": tg.create_task(p.feed.run(), name="feed"),
                "backfill": tg.create_task(p.backfiller.run(), name="backfill"),
                "tick": tg.create_task(p.watchdog(options.watchdog_seconds or 5.0), name="tick"),
            }
            if p.state is not None:
                tasks["state"] = tg.create_task(p.state.run(), name="state")
            if p.watcher is not None:
                tasks["symbols"] = tg.create_task(p.watcher.run(), name="symbols")
            try:
                ended = await _stop_or_death(stop, tasks)
            except asyncio.CancelledError:  # a task crashed: make sure every other one ends
                await _cancel_all(tasks.values())
                raise
            if ended is not None:
                await _cancel_all(tasks.values())
                raise RuntimeError(f"the {ended} task ended by itself")
            status = await _shutdown(p, tasks, options)
    except BaseException:
        _report_leftovers(p, crashed=True)
        raise
    finally:
        await p.output.stop()
        if p.state is not None and p.state.flush():
            log.info("state_saved", path=str(p.state.path), last_acked=p.state.last_acked)
        await p.http.close()
        if options.serve_metrics:
            await server.stop()
    if status:
        return status
    log.info("stopped", produced=_total(p.metrics))
    return 0


async def _shutdown(p: Producer, tasks: dict[str, asyncio.Task[None]], options: Options) -> int:
    """The ordered shutdown of the module docstring; the exit status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.shutdown_seconds
    options.notifier.stopping("flushing to the broker")
    log.info("stopping", buffered=len(p.outbox), missing=p.missing_symbols())
    # 1. stop reading (and changing the symbols)
    if "symbols" in tasks:
        await _cancel_all([tasks["symbols"]])
    p.feed.stop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.1, deadline - loop.time())):
            await asyncio.shield(tasks["feed"])
    await _cancel_all([tasks["feed"]])
    p.intake.feed_stopped()
    # 2. finish the backfill (three quarters of the time at most)
    backfill_until = loop.time() + 0.75 * max(0.0, deadline - loop.time())
    backfilling = tasks["backfill"]
    while p.missing_symbols() and loop.time() < backfill_until and not backfilling.done():  # noqa: ASYNC110 - a condition over every symbol, no one event
        await asyncio.sleep(0.05)
    await _cancel_all([tasks["backfill"]])
    # 3. flush
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - loop.time())):
            await p.outbox.wait_empty()
    # 4. stop publishing (the state file is written once more after the output's flush)
    await _cancel_all([t for name, t in tasks.items() if name in ("publisher", "tick", "state")])
    return 1 if _report_leftovers(p, crashed=False) else 0


def _report_leftovers(p: Producer, crashed: bool) -> bool:
    """Log what is left behind (error level, per symbol with ids); True if anything."""
    left = p.leftovers()
    for item in left:
        log.error("shutdown_left_behind", **item)
    if left:
        log.error(
            "crashed_with_leftovers" if crashed else "stopped_with_leftovers",
            held=sum(int(str(i.get("held", 0))) for i in left),
            missing=sum(int(str(i.get("missing", 0))) for i in left),
            open_catch_ups=sum(1 for i in left if "open" in str(i.get("missing_ids", ""))),
            unflushed=sum(int(str(i.get("unflushed", 0))) for i in left),
            symbols=[i["symbol"] for i in left],
        )
    return bool(left)


async def _stop_or_death(stop: asyncio.Event, tasks: dict[str, asyncio.Task[None]]) -> str | None:
    """Wait for ``stop`` (``None``) or for a task to end (its name; a crash cancels us)."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([stopping, *tasks.values()], return_when="FIRST_COMPLETED")
    finally:
        stopping.cancel()
    if stopping in done:
        return None
    return next(name for name, task in tasks.items() if task in done)


async def _cancel_all(tasks: Iterable[asyncio.Task[None]], within: float = 10.0) -> None:
    """Cancel until done: a task may swallow one cancellation (Python 3.11's ``wait_for``
    does when the awaited thing completes at the same moment); it must not swallow them all."""
    loop = asyncio.get_running_loop()
    until = loop.time() + within
    while pending := [t for t in tasks if not t.done()]:
        if loop.time() >= until:
            log.error("tasks_not_ending", tasks=[t.get_name() for t in pending])
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)


def _total(metrics: ProducerMetrics) -> int:
    return int(sum(s.value for m in metrics.produced.collect() for s in m.samples
                   if s.name.endswith("_total")))  # fmt: skip
