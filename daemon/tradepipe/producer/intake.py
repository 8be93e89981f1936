"""Messages in, records out: validation, quarantine, metrics and per-symbol sequencing.

The synchronous heart of the producer: the WebSocket readers call :meth:`Intake.live` for every
message and the backfiller calls :meth:`Intake.rest_page` for every REST page; both end in the
symbol's :class:`~tradepipe.producer.sequencer.Sequencer`, whose output goes to the
:class:`~tradepipe.producer.outbox.Outbox` in id order. No sockets, so it is tested directly.

Rules:
1. Catch-ups end only on evidence from *after* the current connection started delivering.
   :meth:`disconnected` (a drop) starts a catch-up on every symbol and clears the *epoch*;
   :meth:`delivering` (a connection's first message) opens a new epoch. A REST request carries
   the :meth:`catch_up_token` of its moment; an empty or short answer ends an open-ended
   catch-up only if the token still holds: the request went out in the current epoch, after
   the connection delivered, and no new reason for a catch-up arrived since. So a catch-up
   started by a drop survives a refused or slow reconnect and a market that goes quiet: the
   trades published while we were away are fetched whatever comes (or does not) afterwards.
   :meth:`feed_stopped` (shutdown) opens a last epoch: REST answers after the close cover
   everything the closed connection could have delivered. Epochs are kept *per symbol*: with
   several connections (producer/shards.py) a drop clears only the epochs of the symbols that
   connection carried, and a symbol subscribed by a ``SUBSCRIBE`` message gets its epoch when
   the server confirms it, not when the connection first delivered something else.
2. One memory bound for the process: :attr:`in_memory` (records held by every sequencer plus
   those in the outbox) never exceeds :attr:`max_records`. Live trades are refused past it
   (counted, fetched from REST later); REST pages are sized to the room
   (:meth:`page_limit`, :meth:`wait_room`); the hold is shared (``HoldBudget``) and limited
   to half the bound, so a REST page always finds room once the broker drains the outbox.
3. An empty REST answer for a bounded range is not final (REST may trail the stream): it is
   reported as no progress, and the backfiller gives up only after its time limit.
4. Symbols come and go while running (``feed.symbols = *``): :meth:`add_symbol` starts a
   sequencer (or takes a retired one up again, catching up from where it stopped) and tells
   ``on_added`` (the backfiller); :meth:`retire` marks one unsubscribed: its sequencer stays
   (held trades and missing ids are still filled and reported), its epoch opens as at a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import msgspec
import structlog
from msgspec import UNSET

from tradepipe.core import ParseError, Reason, Wire, decode, trade_from_object, validate
from tradepipe.core.parse import MAX_ID, MAX_LINE_BYTES
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.records import Record
from tradepipe.producer.sequencer import HoldBudget, Sequencer

log = structlog.get_logger(__name__)

_WRAPPER_PREFIX = b'{"stream":"'
_DATA_KEY = b',"data":'


NOT_ON_EXCHANGE = "not_on_exchange"  # quarantine reason: sequencer rule 8


class Signal(enum.Enum):
    SERVER_SHUTDOWN = "serverShutdown"  # Binance asks us to reconnect now


CatchUpToken = tuple[int | None, int]  # (epoch, the sequencer's catch_up_wanted) - rule 1


def inner_value(raw: bytes, wire: Wire) -> bytes:
    """The aggTrade object's JSON exactly as received: the text of a combined-stream wrapper's
    ``data`` when the wrapper has Binance's compact form, else the validated fields
    re-serialised (unknown fields dropped)."""
    if raw.startswith(_WRAPPER_PREFIX):
        at = raw.find(_DATA_KEY)
        # the stream name must be a plain string (no quote before its closing one), so the
        # first ',"data":' really is the wrapper's key
        if at > 0 and raw.find(b'"', len(_WRAPPER_PREFIX)) == at - 1 and raw.endswith(b"}}"):
            return raw[at + len(_DATA_KEY) : -1]
        return msgspec.json.encode(wire.inner())
    stripped = raw.strip()
    return stripped if stripped.startswith(b"{") else msgspec.json.encode(wire.inner())


_REST_KEYS = ("a", "p", "q", "f", "l", "T", "m")


def rest_value(obj: dict[str, Any], symbol: str) -> bytes:
    """A (validated) REST element as a WebSocket event: ``e``, ``E`` (= ``T``) and ``s`` added,
    the exchange's decimal strings untouched, fields that are not an aggTrade's dropped."""
    event = {"e": "aggTrade", "E": obj["T"], "s": symbol, **{k: obj[k] for k in _REST_KEYS}}
    if type(obj.get("M")) is bool:
        event["M"] = obj["M"]
    return msgspec.json.encode(event)


def raw_of(obj: object) -> bytes:
    """A REST element as JSON for the quarantine, whatever it holds (never raises)."""
    try:
        return msgspec.json.encode(obj)[:MAX_LINE_BYTES]
    except (TypeError, ValueError, OverflowError, RecursionError):
        return repr(type(obj)).encode()


class Intake:
    def __init__(
        self,
        symbols: Sequence[str],
        outbox: Outbox,
        metrics: ProducerMetrics,
        quarantine: Quarantine,
        max_held: int = 20_000,
        on_gap: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox, self.metrics, self.quarantine = outbox, metrics, quarantine
        self.on_gap = on_gap
        self.on_added: Callable[[Sequencer], None] = lambda seq: None  # rule 4
        # rule 2: one bound for held + outbox; the hold gets at most half of it
        self.max_records = outbox.max_records
        self.hold = HoldBudget(max(1, min(max_held, self.max_records // 2)))
        if self.hold.limit < max_held:
            log.warning("max_held_lowered", max_held=max_held, to=self.hold.limit,
                        why="at most half of kafka.buffer_max_messages")  # fmt: skip
        self.sequencers = {s.upper(): Sequencer(s.upper(), budget=self.hold) for s in symbols}
        self.last_message_at: float | None = None  # monotonic
        # rule 1, per symbol: None until a connection carrying it delivers
        self.epochs: dict[str, int | None] = dict.fromkeys(self.sequencers)
        self.retired: set[str] = set()  # rule 4
        self._epochs = itertools.count(1)
        self._received = {s: metrics.received.labels(s) for s in self.sequencers}

    # ------------------------------------------------------------- the memory bound (rule 2)

    @property
    def in_memory(self) -> int:
        return len(self.outbox) + self.hold.held

    @property
    def room(self) -> int:
        return max(0, self.max_records - self.in_memory)

    def page_limit(self) -> int:
        """The largest REST page we ask for: a quarter of the bound, at most 1000."""
        return max(1, min(1000, self.max_records // 4))

    async def wait_room(self, needed: int) -> None:
        """Until ``needed`` more records fit (acks free room; a skip may free the hold)."""
        while self.room < needed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.outbox.wait_change()

    def resume(self, last_ids: Mapping[str, int]) -> None:
        """Start each symbol after ``last_ids[symbol]`` (a restart's resume point) and catch up
        from there: REST fetches the downtime, ended under rule 1 like any catch-up. Use this,
        not a new :class:`Sequencer`, so the symbol keeps its share of the one hold budget."""
        for symbol, last_id in last_ids.items():
            seq = self.sequencers.get(symbol.upper())
            if seq is None or (seq.last_id is not None and seq.last_id >= last_id):
                continue
            seq.last_id = last_id
            seq.want_catch_up()
        self.on_gap()

    # ------------------------------------------------------------- symbols coming and going

    def add_symbol(self, symbol: str, last_id: int | None = None) -> Sequencer:
        """Rule 4: stream ``symbol`` from now on. ``last_id``: the id before the first one
        wanted (a catch-up fetches from there); a retired symbol catches up from where it
        stopped whatever ``last_id`` says."""
        symbol = symbol.upper()
        self.retired.discard(symbol)
        seq = self.sequencers.get(symbol)
        if seq is None:
            seq = self.sequencers[symbol] = Sequencer(symbol, budget=self.hold)
            self._received[symbol] = self.metrics.received.labels(symbol)
            if last_id is not None:
                seq.last_id = last_id
            self.on_added(seq)
        self.epochs[symbol] = None  # not delivering until its subscription is confirmed
        if seq.last_id is not None:
            seq.want_catch_up()
        self.on_gap()
        return seq

    def retire(self, symbol: str) -> None:
        """Rule 4: ``symbol`` is unsubscribed; REST asked from now on covers what we could get."""
        symbol = symbol.upper()
        if symbol in self.sequencers:
            self.retired.add(symbol)
            self.epochs[symbol] = next(self._epochs)
            self.on_gap()

    # --------------------------------------------------------- connections and epochs (rule 1)

    def delivering(self, symbols: Iterable[str] | None = None) -> None:
        """A connection delivered its first message (or the server confirmed a subscription):
        REST asked from now on is complete up to what it delivers for ``symbols`` (all)."""
        epoch = next(self._epochs)
        for symbol in self.sequencers if symbols is None else symbols:
            self.epochs[symbol.upper()] = epoch
        self.on_gap()  # wake the backfiller: pending catch-ups can end now

    def feed_stopped(self) -> None:
        """We closed the feed (shutdown): REST asked from now on covers all we could have got."""
        self.delivering()

    def catch_up_token(self, seq: Sequencer) -> CatchUpToken:
        return self.epochs.get(seq.symbol), seq.catch_up_wanted

    # ------------------------------------------------------------------ live WebSocket messages

    def live(self, message: bytes | str) -> Signal | None:
        self.last_message_at = now = time.monotonic()
        # (a str that is not valid Unicode is rejected by decode; raw is then for the quarantine)
        raw = message.encode("utf-8", "replace") if isinstance(message, str) else message
        try:
            wire = decode(message)
            if wire.inner().e == "serverShutdown":
                log.warning("server_shutdown_announced")
                return Signal.SERVER_SHUTDOWN
            if wire.id is not UNSET and (wire.result is not UNSET or wire.error is not UNSET):
                # a SUBSCRIBE answer; we subscribe by URL
                log.info("control_reply", reply=raw[:300].decode("utf-8", "replace"))
                return None
            trade = validate(wire, None, int(time.time() * 1000))
            seq = self.sequencers.get(trade.symbol)
            if seq is None:
                raise ParseError(Reason.BAD_SYMBOL, f"symbol {trade.symbol!r} was not subscribed")
        except ParseError as exc:
            self.reject(exc, raw)
            return None
        self._received[trade.symbol].inc()
        if self.in_memory >= self.max_records:
            # No room (rule 2): refuse it; REST brings it back once the broker drains the buffer.
            self.metrics.deferred.labels(trade.symbol).inc()
            seq.want_catch_up()
            return None
        value = inner_value(raw, wire)
        self.offer(seq, Record(trade.symbol, trade.agg_id, trade.time_ms, value, False, now))
        return None

    def disconnected(
        self,
        others_delivering: bool = False,
        symbols: Iterable[str] | None = None,
        live_elsewhere: Collection[str] = (),
    ) -> None:
        """A connection carrying ``symbols`` (all) dropped: trades may have been missed on each
        (rule 1). When another open connection is delivering them (a rollover's overlap: all
        with ``others_delivering``, else those in ``live_elsewhere``), it is the current one."""
        epoch = next(self._epochs)
        for symbol in self.sequencers if symbols is None else [s.upper() for s in symbols]:
            seq = self.sequencers.get(symbol)
            if seq is None or symbol in self.retired:
                continue
            seq.want_catch_up()
            live = others_delivering or symbol in live_elsewhere
            self.epochs[symbol] = epoch if live else None
        self.on_gap()

    def reject(self, exc: ParseError, raw: bytes | str) -> None:
        self.metrics.malformed.labels(exc.reason).inc()
        text = raw if isinstance(raw, str) else raw[:1000].decode("utf-8", "replace")
        log.warning("malformed_message", reason=exc.reason, error=exc.message, raw=text[:300])
        self.quarantine.add(exc.reason, exc.message, raw[:MAX_LINE_BYTES])  # capped

    # ----------------------------------------------------------------------- sequencing, output

    def offer(self, seq: Sequencer, record: Record) -> None:
        gaps = seq.gaps
        out = seq.offer(record)
        if out is None:
            self.metrics.duplicates.labels(seq.symbol).inc()
            return
        if out:
            self.emit(seq, out)
        if seq.gaps != gaps:
            self.metrics.gaps.labels(seq.symbol).inc()
            log.warning("gap_detected", symbol=seq.symbol, missing=seq.missing())
            self.on_gap()

    def emit(self, seq: Sequencer, records: list[Record]) -> None:
        backfilled = sum(1 for r in records if r.backfilled)
        if backfilled:
            self.metrics.backfilled.labels(seq.symbol).inc(backfilled)
        self.outbox.extend(records)

    def skip(self, seq: Sequencer, to_id: int, why: str) -> None:
        first = (seq.last_id or 0) + 1
        count, out = seq.skip_to(to_id)
        if out:
            self.emit(seq, out)
        if count:
            self.metrics.unfilled.labels(seq.symbol).inc(count)
            log.error("gap_unfilled", symbol=seq.symbol, first=first, last=to_id, count=count,
                      why=why)  # fmt: skip

    def set_aside(self, seq: Sequencer, why: str) -> None:
        """Sequencer rule 8: held trades the exchange does not know go to the quarantine
        (counted, logged with their ids), then a catch-up fetches any that were real."""
        records = seq.release_held()
        if not records:
            return
        for rec in records:
            self.quarantine.add(NOT_ON_EXCHANGE, why, rec.value)
        self.metrics.quarantined.labels(seq.symbol, NOT_ON_EXCHANGE).inc(len(records))
        log.error("held_trades_set_aside", symbol=seq.symbol, count=len(records),
                  first=records[0].agg_id, last=records[-1].agg_id,
                  ids=[r.agg_id for r in records[:20]], last_id=seq.last_id,
                  why=why)  # fmt: skip
        seq.want_catch_up()
        self.on_gap()

    # ------------------------------------------------------------------------- REST backfill

    def rest_page(
        self,
        seq: Sequencer,
        objs: list[Any],
        from_id: int,
        until: int | None,
        limit: int,
        token: CatchUpToken | None = None,
    ) -> bool:
        """Apply one ``GET /api/v3/aggTrades?fromId=from_id&limit=limit`` answer, asked with
        ``token`` (:meth:`catch_up_token`; ``None``: no catch-up may end on it). True if the
        page moved the symbol on.

        Ids the page shows REST does not have (it starts later than ``from_id``) are skipped
        and counted (sequencer rule 6); an empty answer is no progress (rule 3), and ends an
        open-ended catch-up only under rule 1, as does a short one.
        """
        before = seq.last_id
        if not objs:
            if until is None:
                self._maybe_caught_up(seq, token)
            return False
        for obj in objs:
            try:
                if not isinstance(obj, dict):
                    raise ParseError(Reason.NOT_AN_OBJECT, "REST element is not an object")
                trade = trade_from_object(obj, seq.symbol, int(time.time() * 1000))
            except ParseError as exc:
                self.reject(exc, raw_of(obj))
                agg_id = obj.get("a") if isinstance(obj, dict) else None
                if type(agg_id) is int and from_id <= agg_id <= MAX_ID:  # never a wild jump
                    self.skip(seq, agg_id, f"REST trade malformed: {exc.reason}")
                continue
            if (
                seq.last_id is not None
                and trade.agg_id > seq.last_id + 1
                and not seq.held_has(seq.last_id + 1)
            ):
                self.skip(seq, trade.agg_id - 1, "REST skips these ids")
            value = rest_value(obj, seq.symbol)
            record = Record(seq.symbol, trade.agg_id, trade.time_ms, value, True, time.monotonic())
            self.offer(seq, record)
        if until is None and len(objs) < limit:
            self._maybe_caught_up(seq, token)
        return seq.last_id != before

    def _maybe_caught_up(self, seq: Sequencer, token: CatchUpToken | None) -> None:
        """Rule 1: only an answer asked in the current epoch, after a connection delivered."""
        if token is None or token[0] is None or token[0] != self.epochs.get(seq.symbol):
            return
        seq.caught_up(token[1])
