"""Where a restarted producer picks up: the last id per symbol, from the topic and the state file.

Rules (run once at start, before the feed connects):

1. **The topic first.** Records are keyed by symbol and partitioned by aiokafka's default
   partitioner (murmur2 of the key), so only the partitions the symbols hash to are read, from
   the end backwards in windows, without a consumer group, until every symbol of that
   partition has been seen or the partition's beginning is reached. The highest ``a`` per
   symbol is its candidate.
2. **Only our own records count.** A record is used only if its key is the symbol, its value
   an ``aggTrade`` object of that symbol with an ``a`` in 0 .. 2**63-1, and (for CreateTime
   topics) its timestamp equals its ``T`` -- as :mod:`.kafka` writes them. Anything else (a
   foreign producer, garbage) is counted and logged, never used.
3. **The state file second** (:mod:`.state`): the last *acknowledged* id per symbol. Per
   symbol the newer (higher) of the two candidates wins. When the topic cannot be read (the
   broker is down at start), the state file alone decides: it lags the topic by at most a
   second of acks, which means duplicates after the restart, never a gap.
4. **Checked against the exchange.** One ``GET /api/v3/aggTrades?symbol=S&limit=1`` per
   resumed symbol gives the newest id ``N``. A candidate above ``N`` is absurd (a foreign or
   corrupt id would make every real trade look like a duplicate): it is logged at error level
   and the other source's candidate is used instead, if sane. If ``N - candidate`` exceeds
   ``max_resume_trades``, only the newest ``max_resume_trades`` ids are fetched; the older
   ones are skipped, counted in ``tradepipe_gap_unfilled_trades_total`` and logged with the
   range. When REST cannot answer, the candidate is used unchecked (logged).
5. The whole start-up step is bounded by ``feed.resume_timeout_seconds`` (two thirds of it
   for the topic); what it could not finish in time falls back as rules 3 and 4 say (what
   was found so far and the state file; unchecked).

The resumed ids seed the sequencers (``Sequencer(last_id=...)``), which then ask for an
open-ended catch-up: the backfill fetches ``fromId = last_id + 1`` pages, merged with the live
stream in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from tradepipe.config import Settings
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.rest import AGG_TRADES_WEIGHT
from tradepipe.producer.state import StateError, load_state, set_aside, valid_agg_id

log = structlog.get_logger(__name__)

WINDOW = 2_000  # records read per step backwards
CREATE_TIME = 0  # Kafka timestamp type


@dataclass
class TopicTail:
    """What rule 1 found: the highest valid id per symbol, and what was not ours (rule 2)."""

    last_ids: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    foreign: int = 0


@dataclass(frozen=True)
class Resumed:
    """The outcome for one symbol (logged as the ``resumed`` event)."""

    symbol: str
    last_id: int | None
    source: str  # "topic", "state", "none"
    topic_id: int | None
    state_id: int | None
    newest_id: int | None  # from REST; None = unchecked
    skipped: int = 0  # ids older than max_resume_trades, given up (rule 4)


def _ours(record: Any, symbol: str) -> int | None:
    """The record's aggregate id if it is one of our records for ``symbol`` (rule 2)."""
    if record.key != symbol.encode():
        return None
    try:
        obj = msgspec.json.decode(record.value)
    except (msgspec.DecodeError, TypeError):
        return None
    if not isinstance(obj, dict) or obj.get("e") != "aggTrade" or obj.get("s") != symbol:
        return None
    agg_id = obj.get("a")
    if not valid_agg_id(agg_id):
        return None
    if record.timestamp_type == CREATE_TIME and record.timestamp != obj.get("T"):
        return None
    assert isinstance(agg_id, int)
    return agg_id


async def read_topic_tail(
    bootstrap: str,
    topic: str,
    symbols: Sequence[str],
    request_timeout_ms: int = 10_000,
    tail: TopicTail | None = None,
) -> TopicTail:
    """Rule 1 and 2, filling ``tail`` as it goes (so a caller that times out keeps what was
    found); raises :class:`KafkaError` (or ``OSError``) when the broker cannot answer."""
    tail = tail if tail is not None else TopicTail()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a window start deleted by retention meanwhile
        request_timeout_ms=request_timeout_ms,
        client_id="tradepipe-producer-resume",
    )
    await consumer.start()
    try:
        partitions = sorted(await _partitions(consumer, topic))
        if not partitions:
            return tail  # no topic yet: a first start
        partitioner = DefaultPartitioner()
        wanted: dict[int, set[str]] = {}
        for symbol in symbols:
            part = partitioner(symbol.encode(), partitions, partitions)
            wanted.setdefault(part, set()).add(symbol)
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            await _scan_partition(consumer, tp, begins[tp], ends[tp], wanted[tp.partition], tail)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()
    return tail


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    if topic not in await consumer.topics():
        return set()
    # the client learns a topic's partitions only once it is asked about one of them
    first = TopicPartition(topic, 0)
    consumer.assign([first])
    await consumer.end_offsets([first])
    return consumer.partitions_for_topic(topic) or {0}


async def _scan_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    begin: int,
    end: int,
    symbols: set[str],
    tail: TopicTail,
) -> None:
    missing = set(symbols)
    while missing and end > begin:
        start = max(begin, end - WINDOW)
        consumer.seek(tp, start)
        position = start
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=WINDOW)
            records = batch.get(tp, [])
            if not records:
                break  # only control records (or deleted ones) left below ``end``
            for record in records:
                if record.offset >= end:
                    break
                tail.scanned += 1
                symbol = record.key.decode(errors="replace") if record.key else ""
                if symbol not in symbols:
                    continue
                agg_id = _ours(record, symbol)
                if agg_id is None:
                    tail.foreign += 1
                    log.warning("resume_foreign_record", topic=tp.topic, partition=tp.partition,
                                offset=record.offset, key=symbol)  # fmt: skip
                    continue
                missing.discard(symbol)
                if agg_id > tail.last_ids.get(symbol, -1):
                    tail.last_ids[symbol] = agg_id
            position = records[-1].offset + 1
        end = start


async def newest_ids(
    rest_url: str,
    symbols: Sequence[str],
    weight_per_minute: int,
    out: dict[str, int | None] | None = None,
) -> dict[str, int | None]:
    """Rule 4: the exchange's newest aggregate id per symbol (``None`` where REST did not say),
    requests paced within our REST weight budget, filling ``out`` as answers come."""
    url = rest_url.rstrip("/") + "/api/v3/aggTrades"
    interval = 60.0 * AGG_TRADES_WEIGHT / weight_per_minute
    out = out if out is not None else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for i, symbol in enumerate(symbols):
            if i:
                await asyncio.sleep(interval)
            out[symbol] = None
            try:
                async with http.get(url, params={"symbol": symbol, "limit": "1"}) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        log.warning("resume_rest_status", symbol=symbol, status=resp.status)
                        continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("resume_rest_failed", symbol=symbol, error=repr(exc))
                continue
            with contextlib.suppress(msgspec.DecodeError):
                page = msgspec.json.decode(body)
                if isinstance(page, list) and page and isinstance(page[-1], dict):
                    newest = page[-1].get("a")
                    if valid_agg_id(newest):
                        out[symbol] = newest
    return out


def choose(
    symbol: str,
    topic_id: int | None,
    state_id: int | None,
    newest: int | None,
    max_trades: int,
) -> Resumed:
    """Rules 3 and 4 for one symbol (pure)."""
    candidates = sorted(
        ((i, src) for i, src in ((topic_id, "topic"), (state_id, "state")) if i is not None),
        reverse=True,
    )
    for agg_id, source in candidates:
        if newest is not None and agg_id > newest:
            log.error("resume_point_ahead_of_exchange", symbol=symbol, source=source,
                      last_id=agg_id, newest_id=newest)  # fmt: skip
            continue
        if newest is not None and newest - agg_id > max_trades:
            start = newest - max_trades
            return Resumed(symbol, start, source, topic_id, state_id, newest, start - agg_id)
        return Resumed(symbol, agg_id, source, topic_id, state_id, newest)
    return Resumed(symbol, None, "none", topic_id, state_id, newest)


async def resume_points(settings: Settings, metrics: ProducerMetrics) -> dict[str, int]:
    """Rules 1 to 5: the last id to seed each symbol's sequencer with (absent: start fresh)."""
    feed, kafka = settings.feed, settings.kafka
    symbols = [s.upper() for s in feed.symbols]
    deadline = time.monotonic() + feed.resume_timeout_seconds
    state_path = Path(feed.state_path)
    try:
        state = load_state(state_path, kafka.topic)
    except StateError as exc:
        aside = set_aside(state_path)
        log.error("state_file_unusable", path=str(state_path), error=str(exc),
                  moved_to=str(aside) if aside else None)  # fmt: skip
        state = {}
    tail = TopicTail()
    topic = tail.last_ids  # what was found, even if the read did not finish (rule 5)
    try:  # two thirds of the time for the topic, the rest (at least) for the REST check
        async with asyncio.timeout(feed.resume_timeout_seconds * 2 / 3):
            await read_topic_tail(
                kafka.bootstrap_servers, kafka.topic, symbols, kafka.request_timeout_ms, tail
            )
        log.info("resume_topic_read", topic=kafka.topic, scanned=tail.scanned,
                 foreign=tail.foreign, last_ids=topic)  # fmt: skip
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("resume_topic_unreadable", topic=kafka.topic, error=repr(exc),
                    found=dict(topic), fallback="state file",
                    state_path=str(state_path))  # fmt: skip
    to_check = [s for s in symbols if s in topic or s in state]
    newest: dict[str, int | None] = {}
    if to_check:
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await newest_ids(feed.rest_url, to_check, feed.rest_weight_per_minute, newest)
        except TimeoutError:
            unchecked = [s for s in to_check if newest.get(s) is None]
            log.warning("resume_unchecked", symbols=unchecked, why="resume_timeout_seconds")
    out: dict[str, int] = {}
    for symbol in symbols:
        r = choose(symbol, topic.get(symbol), state.get(symbol), newest.get(symbol),
                   feed.max_resume_trades)  # fmt: skip
        if r.skipped:
            metrics.unfilled.labels(symbol).inc(r.skipped)
            log.error("gap_unfilled", symbol=symbol, first=r.last_id - r.skipped + 1
                      if r.last_id is not None else None, last=r.last_id, count=r.skipped,
                      why=f"resume further behind than feed.max_resume_trades "
                      f"({feed.max_resume_trades})")  # fmt: skip
        if r.last_id is not None:
            out[symbol] = r.last_id
        log.info("resumed", symbol=symbol, last_id=r.last_id, source=r.source,
                 topic_id=r.topic_id, state_id=r.state_id, newest_id=r.newest_id,
                 checked=r.newest_id is not None, skipped=r.skipped)  # fmt: skip
    return out
