"""Every symbol on a few connections: the symbols split into *shards* of at most
``feed.max_streams_per_connection`` streams, one :class:`~tradepipe.producer.feed.Feed` each.

Rules:
1. At start the symbols (sorted) are cut into shards in order; a symbol added later joins the
   emptiest shard with room (``SUBSCRIBE`` on its open connection), else a new shard opens;
   a symbol removed is unsubscribed from its shard, and a shard left empty is closed.
2. Each shard has its own connection, rollover and reconnect backoff; one
   :class:`~tradepipe.producer.backoff.AttemptLimiter` paces them all, so the process stays
   within :data:`CONNECT_ATTEMPTS` per 5 minutes whatever the number of shards and drops
   (Binance allows 300 per IP).
3. The gap logic does not care which connection a trade came on: every shard feeds the one
   :class:`~tradepipe.producer.intake.Intake` (per-symbol sequencers and epochs); a drop
   catches up only the symbols of the shard that dropped.
4. The process is *connected* when every shard is (``/healthz`` names the ones that are not).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence

import structlog

from tradepipe.producer.backoff import AttemptLimiter, Backoff
from tradepipe.producer.feed import Feed
from tradepipe.producer.geoblock import GeoBlock
from tradepipe.producer.intake import Intake
from tradepipe.producer.metrics import ProducerMetrics

log = structlog.get_logger(__name__)

CONNECT_ATTEMPTS = 200  # per 5 minutes, all shards together (rule 2; Binance: 300 per IP)


class Shards:
    def __init__(
        self,
        base_url: str,
        symbols: Sequence[str],
        per_connection: int,
        intake: Intake,
        metrics: ProducerMetrics,
        rollover_seconds: float = 23.5 * 3600,
        backoff_cap: float = 30.0,
        on_connected: Callable[[], None] = lambda: None,
        geo: GeoBlock | None = None,
        limiter: AttemptLimiter | None = None,
    ) -> None:
        self.base_url, self.per_connection = base_url, per_connection
        self.intake, self.metrics = intake, metrics
        self.rollover_seconds, self.backoff_cap = rollover_seconds, backoff_cap
        self.on_connected = on_connected
        self.geo = geo or GeoBlock()
        self.limiter = limiter or AttemptLimiter(CONNECT_ATTEMPTS, 300.0)
        self.feeds: dict[int, Feed] = {}
        self._numbers = itertools.count(1)
        self._tasks: asyncio.TaskGroup | None = None
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        ordered = sorted(dict.fromkeys(s.upper() for s in symbols))
        for at in range(0, len(ordered), per_connection):
            self._new_feed(ordered[at : at + per_connection])
        metrics.symbols.set(len(ordered))

    # -- what the service asks -------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return [s for feed in self.feeds.values() for s in feed.symbols]

    @property
    def connected(self) -> bool:
        """Rule 4."""
        return bool(self.feeds) and all(f.connected for f in self.feeds.values())

    def not_connected(self) -> list[str]:
        return [f"shard {n} ({len(f.symbols)} streams)" for n, f in self.feeds.items()
                if not f.connected]  # fmt: skip

    @property
    def last_attempt_at(self) -> float | None:
        """The oldest latest attempt among shards not connected (the watchdog's progress)."""
        waiting = [f.last_attempt_at for f in self.feeds.values() if not f.connected]
        if not waiting:
            return max((f.last_attempt_at or 0.0 for f in self.feeds.values()), default=None)
        return None if None in waiting else min(a for a in waiting if a is not None)

    @property
    def open_timeout(self) -> float:
        return next(iter(self.feeds.values())).open_timeout if self.feeds else 10.0

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                for number in list(self.feeds):
                    self._start(number)
        finally:
            self._tasks = None

    def stop(self) -> None:
        self._stopping = True
        for feed in self.feeds.values():
            feed.stop()

    # -- symbols coming and going (rule 1) ------------------------------------------------
    def add(self, symbols: Sequence[str]) -> None:
        have = set(self.symbols)
        new = [s.upper() for s in symbols if s.upper() not in have]
        while new:
            roomy = [f for f in self.feeds.values() if len(f.symbols) < self.per_connection]
            if roomy:
                feed = min(roomy, key=lambda f: len(f.symbols))
                take = self.per_connection - len(feed.symbols)
                feed.add(new[:take])
                log.info("shard_subscribing", shard=feed.shard, symbols=new[:take])
            else:
                take = self.per_connection
                number = self._new_feed(new[:take])
                log.info("shard_opened", shard=number, symbols=new[:take])
                if self._tasks is not None:
                    self._start(number)
            new = new[take:]
        self.metrics.symbols.set(len(self.symbols))

    def remove(self, symbols: Sequence[str]) -> None:
        gone = {s.upper() for s in symbols}
        for number, feed in list(self.feeds.items()):
            mine = [s for s in feed.symbols if s in gone]
            if not mine:
                continue
            feed.remove(mine)
            if not feed.symbols:
                log.info("shard_closed", shard=number, why="no symbols left")
                feed.stop()
                del self.feeds[number]
                self.metrics.shard_connected.labels(str(number)).set(0)
        self.metrics.symbols.set(len(self.symbols))

    # -- internals ------------------------------------------------------------------------
    def _new_feed(self, symbols: list[str]) -> int:
        number = next(self._numbers)
        self.feeds[number] = Feed(
            self.base_url, symbols, self.intake, self.metrics,
            rollover_seconds=self.rollover_seconds, backoff=Backoff(cap=self.backoff_cap),
            limiter=self.limiter, on_connected=self.on_connected, geo=self.geo, shard=number,
        )  # fmt: skip
        self.metrics.shard_streams.labels(str(number)).set(len(symbols))
        self.metrics.shard_connected.labels(str(number)).set(0)
        return number

    def _start(self, number: int) -> None:
        assert self._tasks is not None
        feed = self.feeds[number]
        if self._stopping:
            feed.stop()
        self._runs[number] = self._tasks.create_task(
            self._run(number, feed), name=f"shard-{number}"
        )

    async def _run(self, number: int, feed: Feed) -> None:
        try:
            await feed.run()
        finally:
            self._runs.pop(number, None)
