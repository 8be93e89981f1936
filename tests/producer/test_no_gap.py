"""The no-gap guarantee through hostile feeds, counted against an independent tally (the tape).

Every test runs the producer in-process (``serve()``) against the emulator over a socket and
real Kafka, on small synthetic tapes (``tapes.py``) that end in a quiet market, and compares
what Kafka holds with the tape: nothing missing, nothing extra, in id order per symbol — or,
where a loss is forced (REST failing past its time limit, a stop with work left), exactly
the lost ids are counted and logged.

The races these tests guard against depend on where a fault falls relative to the end of the
trading, so the drop tests run many seeded repetitions in one test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiokafka.admin import AIOKafkaAdminClient

from tradepipe.observability import Notifier
from tradepipe.producer import Producer
from tradepipe.producer.intake import Intake
from tradepipe.producer.kafka import KafkaOutput
from tradepipe.replay import Emulator, Tape

from .conftest import (
    Serving,
    assert_exactly_once_in_order,
    emulating,
    ids_by_symbol,
    producer_settings,
    read_topic,
    serving,
)
from .tapes import synthetic_tape

FAST_FEED = {"backoff_max_seconds": 0.3, "stall_seconds": 5.0}


def _metric(producer: Producer, name: str, **labels: str) -> float:
    value = producer.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else float(value)


class Run:
    """One emulator + one in-process producer (conftest's :func:`serving`) on a fresh topic."""

    def __init__(self, emu: Emulator, served: Serving, topic: str):
        self.emu, self.served, self.topic = emu, served, topic
        self.producer = served.producer


@contextlib.asynccontextmanager
async def running(
    tape: Tape,
    bootstrap: str,
    tmp_path: Path,
    speed: float,
    shutdown_seconds: float = 20.0,
    kafka: dict[str, Any] | None = None,
    serve_options: dict[str, Any] | None = None,
    **feed: Any,
) -> AsyncIterator[Run]:
    topic = f"test-nogap-{uuid.uuid4().hex[:10]}"
    async with emulating(tape, speed=speed) as emu:
        settings = producer_settings(emu, bootstrap, topic, tmp_path, **{**FAST_FEED, **feed})
        if kafka:
            settings = settings.replace(kafka=kafka)
        try:
            opts = {"shutdown_seconds": shutdown_seconds, **(serve_options or {})}
            async with serving(settings, **opts) as served:
                yield Run(emu, served, topic)
        finally:
            await _delete_topic(bootstrap, topic)


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    with contextlib.suppress(Exception):
        await admin.start()
        await admin.delete_topics([topic])
    with contextlib.suppress(Exception):
        await admin.close()


async def _all_acked(run: Run, tape: Tape, within: float = 30.0) -> None:
    """Until the producer has had every trade of the tape acknowledged (or time is up)."""
    want = len(tape.trades)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _metric_total(run.producer, "tradepipe_trades_produced_total") >= want:
            return
        await asyncio.sleep(0.05)


def _metric_total(producer: Producer, name: str) -> float:
    return sum(
        s.value for m in producer.metrics.registry.collect() for s in m.samples if s.name == name
    )


async def _until(condition: Callable[[], bool], within: float) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within} s")


async def _stopped(run: Run) -> int:
    return await run.served.stopped()


def _at_second_before_end(tape: Tape, speed: float, wall_seconds: float) -> int:
    """How many trades are published by ``wall_seconds`` before the last one."""
    cut = tape.last_time_ms - wall_seconds * 1000 * speed
    return sum(1 for t in tape.trades if t.time_ms < cut)


# ------------------------------------------------------------------------------ drops


DROP_BEFORE_QUIET_REPETITIONS = 30


@pytest.mark.timeout(600)
async def test_a_drop_a_second_before_the_market_goes_quiet_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Reconnects refused for 1.5 s from a drop 1 s before the last trade: the trades of that
    second exist only in REST and no live trade ever follows to reveal them. 30 seeded runs,
    each placing the drop (and the end) differently."""
    speed = 10.0
    failures = []
    for seed in range(DROP_BEFORE_QUIET_REPETITIONS):
        tape = synthetic_tape(per_symbol=150, seconds=15.0, seed=seed)
        async with running(tape, kafka_bootstrap, tmp_path, speed) as run:
            # the drop lands 0.7 .. 1.3 s before the end (seeded)
            before = 0.7 + 0.6 * (seed % 7) / 6
            run.emu.drop_at(_at_second_before_end(tape, speed, before), refuse_seconds=1.5)
            await asyncio.wait_for(run.emu.finished.wait(), 30)
            # the reconnect comes after the last trade: the quiet case (no live trade follows)
            p = run.producer
            await _until(lambda p=p: _metric(p, "tradepipe_ws_reconnects_total") >= 1, 10.0)
            await _all_acked(run, tape)
            status = await _stopped(run)
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
            reconnects = _metric(run.producer, "tradepipe_ws_reconnects_total")
            backfilled = _metric_total(run.producer, "tradepipe_trades_backfilled_total")
        try:
            assert_exactly_once_in_order(records, tape)
            assert status == 0, f"exit status {status}"
            assert run.emu.refused > 0, "the reconnect should have been refused at least once"
            assert reconnects >= 1
            assert backfilled > 0, "the last second's trades could only come from REST"
        except AssertionError as exc:
            failures.append(f"seed {seed}: {exc}")
    assert not failures, "\n".join(failures)


SIX_DROPS_REPETITIONS = 8


@pytest.mark.timeout(600)
async def test_six_abrupt_drops_over_a_tape_lose_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Six drops at seeded points, each followed by refused reconnects for a seeded while
    (0.1 .. 0.8 s) while trading goes on; the last one close to the end of the tape."""
    speed = 3.0
    failures = []
    for seed in range(SIX_DROPS_REPETITIONS):
        tape = synthetic_tape(per_symbol=1000, seconds=15.0, seed=100 + seed)
        n = len(tape.trades)
        async with running(tape, kafka_bootstrap, tmp_path, speed) as run:
            feed, p, emu = run.producer.feed, run.producer, run.emu
            points = sorted({int(n * (k + (seed % 3) / 4) / 7) for k in range(1, 7)})
            cut = 0
            for k, at in enumerate(points):
                await asyncio.wait_for(emu.wait_published(at), 30)
                # each drop hits a live connection: the previous drop's reconnect has happened
                # (a refused, backed-off reconnect can outlast the gap between two points)
                await _until(
                    lambda f=feed, p=p, emu=emu, k=k: (
                        f.connected
                        and bool(emu.connections)
                        and _metric(p, "tradepipe_ws_reconnects_total") >= k
                    ),
                    10.0,
                )
                cut += emu.drop_connections()
                emu.refuse_connections(0.1 + 0.4 * ((seed + k) % 5) / 4)
            await asyncio.wait_for(run.emu.finished.wait(), 30)
            await _all_acked(run, tape)
            # the last drop's reconnect too (REST may fill its gap first, and the stop would
            # then come during the refused, backed-off reconnect: 'reconnects 5 >= 6')
            drops = len(points)
            await _until(
                lambda p=p, n=drops: _metric(p, "tradepipe_ws_reconnects_total") >= n, 10.0
            )
            status = await _stopped(run)
            records = await read_topic(kafka_bootstrap, run.topic, n, 15)
            reconnects = _metric(run.producer, "tradepipe_ws_reconnects_total")
        try:
            assert_exactly_once_in_order(records, tape)
            assert status == 0, f"exit status {status}"
            assert cut == len(points), f"{cut} of {len(points)} drops hit a connection"
            assert reconnects >= len(points)
        except AssertionError as exc:
            failures.append(f"seed {seed}: {exc}")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------ REST faults


def _rest_statuses(p: Producer) -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for m in p.metrics.registry.collect()
        for s in m.samples
        if s.name == "tradepipe_rest_requests_total"
    }


async def test_rest_403_5xx_and_lagging_then_recovering_gives_up_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A drop while REST answers 403 (the WAF), then 503, then lags (empty pages for the
    missing ids): all within the give-up time, so everything arrives, nothing is given up."""
    tape = synthetic_tape(per_symbol=800, seconds=8.0, seed=7)
    async with running(
        tape, kafka_bootstrap, tmp_path, speed=1.0, backfill_give_up_seconds=20.0
    ) as run:
        emu, p = run.emu, run.producer
        await asyncio.wait_for(emu.wait_published(len(tape.trades) // 4), 30)
        # each phase lasts until the backfill has met it at least once (a fixed second could
        # fall entirely inside one of its backoff waits on a loaded machine)
        emu.rest.fail(403, 15.0)
        emu.drop_connections()
        emu.refuse_connections(0.5)
        await _until(lambda p=p: _rest_statuses(p).get("403", 0) > 0, 10.0)
        emu.rest.fail(503, 15.0)
        await _until(lambda p=p: _rest_statuses(p).get("503", 0) > 0, 10.0)
        emu.rest.fail(503, 0.0)  # over: REST answers again
        emu.rest.lag(1.5)  # REST shows nothing newer than now: empty pages for what follows
        emu.drop_connections()
        emu.refuse_connections(0.5)
        await asyncio.wait_for(emu.finished.wait(), 30)
        await _all_acked(run, tape)
        status = await _stopped(run)
        records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
        unfilled = _metric_total(p, "tradepipe_gap_unfilled_trades_total")
        abandoned = _metric_total(p, "tradepipe_catch_ups_abandoned_total")
        statuses = _rest_statuses(p)
    assert_exactly_once_in_order(records, tape)
    assert status == 0
    assert unfilled == 0 and abandoned == 0
    assert statuses.get("403", 0) > 0 and statuses.get("503", 0) > 0, statuses
    assert emu.rest.failed_requests > 0


async def test_rest_429_waits_exactly_retry_after_then_fills_everything(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A drop while REST answers 429 with ``Retry-After: 2``: each retry of the backfill is
    scheduled exactly 2 s later (stamina's own record of the wait, not our log line), and
    once REST answers again everything arrives, nothing given up."""
    tape = synthetic_tape(per_symbol=400, seconds=6.0, seed=13)
    with structlog.testing.capture_logs() as logs:
        async with running(
            tape, kafka_bootstrap, tmp_path, speed=1.0, backfill_give_up_seconds=20.0
        ) as run:
            emu = run.emu
            await asyncio.wait_for(emu.wait_published(len(tape.trades) // 4), 30)
            emu.rest.fail(429, 3.0, retry_after=2)
            emu.drop_connections()
            emu.refuse_connections(0.5)
            await asyncio.wait_for(emu.finished.wait(), 30)
            await _all_acked(run, tape)
            status = await _stopped(run)
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
            unfilled = _metric_total(run.producer, "tradepipe_gap_unfilled_trades_total")
    assert_exactly_once_in_order(records, tape)
    assert status == 0 and unfilled == 0
    ours = [e for e in logs if e["event"] == "backfill_retry" and "HTTP 429" in e["error"]]
    scheduled = [
        e for e in logs if e["event"] == "stamina.retry_scheduled" and "HTTP 429" in e["caused_by"]
    ]
    assert ours and len(scheduled) == len(ours), (ours, scheduled)
    assert {e["retry_in"] for e in ours} == {2.0}
    assert {e["wait_for"] for e in scheduled} == {2.0}


async def test_rest_failing_past_the_give_up_time_is_a_counted_logged_loss(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """REST answers 500 for 4 s from a drop on; the producer gives up after 1 s. Exactly the
    ids missing from Kafka are counted in tradepipe_gap_unfilled_trades_total and logged."""
    tape = synthetic_tape(per_symbol=800, seconds=8.0, seed=11)
    with structlog.testing.capture_logs() as logs:
        async with running(
            tape, kafka_bootstrap, tmp_path, speed=1.0, backfill_give_up_seconds=1.0
        ) as run:
            emu = run.emu
            await asyncio.wait_for(emu.wait_published(len(tape.trades) // 4), 30)
            emu.rest.fail(500, 4.0)
            emu.drop_connections()
            emu.refuse_connections(0.5)  # these trades exist only in the failing REST
            await asyncio.wait_for(emu.finished.wait(), 30)
            await asyncio.sleep(1.0)
            status = await _stopped(run)
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades) // 2, 10)
            unfilled = {
                s: _metric(run.producer, "tradepipe_gap_unfilled_trades_total", symbol=s)
                for s in ("BTCUSDT", "ETHUSDT")
            }
            abandoned = _metric_total(run.producer, "tradepipe_catch_ups_abandoned_total")
    got = ids_by_symbol(records)
    want: dict[str, set[int]] = {}
    for t in tape.trades:
        want.setdefault(t.symbol, set()).add(t.agg_id)
    lost = {s: want[s] - set(got.get(s, [])) for s in want}
    logged: dict[str, set[int]] = {}
    for entry in logs:
        if entry["event"] == "gap_unfilled":
            assert entry["log_level"] == "error"
            logged.setdefault(entry["symbol"], set()).update(
                range(entry["first"], entry["last"] + 1)
            )
    assert abandoned == 0, "the gap was bounded by live trades at once: no open-ended loss"
    assert sum(len(v) for v in lost.values()) > 0, "REST failed past the give-up time"
    for symbol in want:
        assert unfilled[symbol] == len(lost[symbol]), symbol
        assert lost[symbol] <= logged.get(symbol, set()), symbol
    assert status == 0  # the loss was counted when it happened; the stop left nothing


async def test_one_symbols_failing_backfill_does_not_hold_up_another(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """REST fails for BTCUSDT only (10 s); ETHUSDT's gap from the same drop is filled while
    BTCUSDT is still retrying; then BTCUSDT's too, and everything arrives."""
    tape = synthetic_tape(per_symbol=800, seconds=12.0, seed=5)
    async with running(
        tape, kafka_bootstrap, tmp_path, speed=1.0, backfill_give_up_seconds=60.0
    ) as run:
        emu, p = run.emu, run.producer
        await asyncio.wait_for(emu.wait_published(len(tape.trades) // 4), 30)
        emu.rest.fail(503, 6.0, symbols=["BTCUSDT"])
        emu.drop_connections()
        emu.refuse_connections(1.0)
        await asyncio.sleep(1.5)
        eth, btc = p.intake.sequencers["ETHUSDT"], p.intake.sequencers["BTCUSDT"]
        await _until(lambda: eth.missing() is None, 4.0)
        assert btc.missing() is not None, "BTCUSDT's REST is failing: its gap must still be open"
        assert "BTCUSDT" in p.backfiller.failing
        await asyncio.wait_for(emu.finished.wait(), 30)
        await _all_acked(run, tape)
        status = await _stopped(run)
        records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
    assert_exactly_once_in_order(records, tape)
    assert status == 0


# ------------------------------------------------------------------------------ dead tasks

POISON = b'{"poison":"makes Intake.live raise an unexpected exception"}'


async def test_an_unexpected_exception_in_the_reader_reconnects_and_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in handling one message (here: a RuntimeError for a marked message) must not
    wedge the producer: the connection is cut and replaced, the error is counted, REST fills
    the gap, and the stop is clean."""
    original = Intake.live

    def live(self: Intake, message: bytes | str) -> Any:
        if message == POISON or message == POISON.decode():
            raise RuntimeError("an unexpected bug in the message handling")
        return original(self, message)

    monkeypatch.setattr(Intake, "live", live)
    tape = synthetic_tape(per_symbol=600, seconds=6.0, seed=3)
    with structlog.testing.capture_logs() as logs:
        async with running(tape, kafka_bootstrap, tmp_path, speed=2.0) as run:
            await asyncio.wait_for(run.emu.wait_published(len(tape.trades) // 3), 30)
            assert run.emu.inject_raw(POISON) == 1
            await asyncio.wait_for(run.emu.finished.wait(), 30)
            await _all_acked(run, tape)
            status = await asyncio.wait_for(_stopped(run), 30)
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
            errors = _metric(run.producer, "tradepipe_ws_reader_errors_total")
            reconnects = _metric(run.producer, "tradepipe_ws_reconnects_total")
    assert_exactly_once_in_order(records, tape)
    assert status == 0
    assert errors == 1 and reconnects >= 1
    failed = [e for e in logs if e["event"] == "ws_reader_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "error"


ABSURD_ID = 10**15  # inside the parser's bounds (< 2^53), far beyond any real aggregate id


async def test_an_absurd_live_id_is_set_aside_not_skipped_to(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """One live trade with an absurd id is held (a jump: ids missing before it). REST answers
    "nothing from last_id + 1" for the whole give-up time, so the exchange does not know it:
    it is set aside into the quarantine (counted, logged with its id) -- not skipped to, which
    would count ~10^15 trades lost and make every real trade after it a duplicate. Every trade
    of the tape reaches Kafka once, in order, nothing is counted lost, the stop is clean."""
    tape = synthetic_tape(per_symbol=500, seconds=6.0, seed=5)
    with structlog.testing.capture_logs() as logs:
        async with running(
            tape, kafka_bootstrap, tmp_path, speed=1.0, backfill_give_up_seconds=1.0
        ) as run:
            await asyncio.wait_for(run.emu.wait_published(len(tape.trades) // 4), 30)
            now = int(time.time() * 1000)
            bogus = (
                b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":%d,"s":"BTCUSDT",'
                b'"a":%d,"p":"1.5","q":"2","f":%d,"l":%d,"T":%d,"m":false,"M":true}}'
                % (now, ABSURD_ID, ABSURD_ID, ABSURD_ID, now)
            )
            assert run.emu.inject_raw(bogus) == 1
            await asyncio.wait_for(run.emu.finished.wait(), 30)
            await _all_acked(run, tape)
            p = run.producer

            def set_aside() -> float:
                return _metric(p, "tradepipe_trades_quarantined_total", symbol="BTCUSDT",
                               reason="not_on_exchange")  # fmt: skip

            await _until(lambda: set_aside() == 1, 30)
            status = await _stopped(run)
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
            unfilled = _metric_total(p, "tradepipe_gap_unfilled_trades_total")
    assert_exactly_once_in_order(records, tape)
    assert unfilled == 0, "nothing was skipped"
    assert status == 0
    aside = [e for e in logs if e["event"] == "held_trades_set_aside"]
    assert len(aside) == 1 and aside[0]["log_level"] == "error"
    assert aside[0]["first"] == aside[0]["last"] == ABSURD_ID
    entries = [
        json.loads(line) for line in (tmp_path / "quarantine.ndjson").read_text().splitlines()
    ]
    kept = [e for e in entries if e["reason"] == "not_on_exchange"]
    assert len(kept) == 1 and json.loads(kept[0]["raw"])["a"] == ABSURD_ID


async def test_a_crashing_task_ends_the_process_with_an_error_and_closes_the_feed(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other task's death is fatal: here the backfill raises on its first REST page. The
    serve() call raises (the command exits 1) within seconds, even though the stop flag is
    never set, and no WebSocket is left open at the emulator."""

    def broken(self: Intake, *args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("an unexpected bug in the backfill")

    monkeypatch.setattr(Intake, "rest_page", broken)
    tape = synthetic_tape(per_symbol=600, seconds=6.0, seed=4)
    async with running(tape, kafka_bootstrap, tmp_path, speed=2.0) as run:
        await asyncio.wait_for(run.emu.wait_published(len(tape.trades) // 3), 30)
        run.emu.drop_connections()
        run.emu.refuse_connections(0.3)  # a gap: the backfill runs, and dies
        with pytest.raises(BaseExceptionGroup) as raised:
            await run.served.ended(20)
        assert raised.group_contains(RuntimeError)
        await _until(lambda: not run.emu.connections, 5.0)


async def test_a_wedged_stage_withholds_the_watchdog_and_the_stop_still_exits(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's publish hangs for ever (a wedge, not an outage: the client never reports
    it): WATCHDOG=1 stops once records have waited stall_seconds + 4 x request_timeout with
    nothing acknowledged, /healthz says "stalled", and a stop still ends, with status 1 and the
    unflushed records logged."""
    original = KafkaOutput.publish
    calls = 0

    async def publish(self: KafkaOutput, records: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 3:
            await asyncio.Event().wait()  # hangs until cancelled
        await original(self, records)

    monkeypatch.setattr(KafkaOutput, "publish", publish)
    path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(path))
    notify.setblocking(False)
    pings: list[float] = []

    async def drain() -> None:
        while True:
            with contextlib.suppress(BlockingIOError):
                while True:
                    if b"WATCHDOG=1" in notify.recv(4096):
                        pings.append(time.monotonic())
            await asyncio.sleep(0.02)

    tape = synthetic_tape(per_symbol=600, seconds=8.0, seed=12)
    serve_options = {"notifier": Notifier(str(path)), "watchdog_seconds": 0.1}
    draining = asyncio.create_task(drain())
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(
                tape, kafka_bootstrap, tmp_path, speed=1.0, shutdown_seconds=1.0,
                stall_seconds=0.5, kafka={"request_timeout_ms": 250}, serve_options=serve_options,
            ) as run:  # fmt: skip
                await _until(lambda: calls > 3, 10.0)
                hung_at = time.monotonic()
                await asyncio.sleep(3.0)  # 0.5 s + 4 x 0.25 s = 1.5 s to withhold
                health = run.producer.health()
                status = await _stopped(run)
    finally:
        draining.cancel()
        notify.close()
    assert any(t < hung_at + 0.5 for t in pings), "the watchdog ran while trades flowed"
    assert not any(t > hung_at + 2.0 for t in pings), "WATCHDOG=1 went on through the wedge"
    assert not health.ok and health.reason.startswith("stalled: no trade acknowledged"), health
    assert [e["log_level"] for e in logs if e["event"] == "pipeline_stalled"] == ["error"]
    assert status == 1
    summary = [e for e in logs if e["event"] == "stopped_with_leftovers"]
    assert len(summary) == 1 and summary[0]["unflushed"] > 0


# ------------------------------------------------------------------------------ shutdown


async def test_a_stop_with_held_and_missing_trades_exits_1_and_logs_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """REST is down (503, retried for up to 300 s) after a drop, so live trades are held ahead
    of the gap when the stop comes with 2 s to finish: the exit status is 1, and every trade
    missing from Kafka is among the ids logged as left behind (held or missing)."""
    tape = synthetic_tape(per_symbol=800, seconds=8.0, seed=9)
    with structlog.testing.capture_logs() as logs:
        async with running(tape, kafka_bootstrap, tmp_path, speed=1.0, shutdown_seconds=2.0) as run:
            emu = run.emu
            await asyncio.wait_for(emu.wait_published(len(tape.trades) // 4), 30)
            emu.rest.fail(503, 60.0)
            emu.drop_connections()
            emu.refuse_connections(0.5)
            await asyncio.wait_for(emu.wait_published(len(tape.trades) // 2), 30)
            held = run.producer.intake.hold.held
            at_stop = {sym: emu.published.last_id(sym) for sym in ("BTCUSDT", "ETHUSDT")}
            started = time.monotonic()
            status = await _stopped(run)
            took = time.monotonic() - started
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades) // 4, 10)
    assert held > 0, "live trades should have been held ahead of the gap"
    assert status == 1
    assert took < 2.0 + 5.0, f"the stop took {took:.1f} s"
    left = [e for e in logs if e["event"] == "shutdown_left_behind"]
    summary = [e for e in logs if e["event"] == "stopped_with_leftovers"]
    assert left and all(e["log_level"] == "error" for e in left)
    assert len(summary) == 1 and summary[0]["held"] > 0 and summary[0]["log_level"] == "error"
    covered: dict[str, set[int]] = {}
    open_from: dict[str, int] = {}
    for e in left:
        ids = covered.setdefault(e["symbol"], set())
        for key in ("held_ids", "missing_ids", "unflushed_ids"):
            if key in e:
                lo, _, hi = str(e[key]).partition("-")
                if hi.isdigit():
                    ids.update(range(int(lo), int(hi) + 1))
                else:  # an open-ended catch-up: everything from lo on
                    open_from[e["symbol"]] = int(lo)
    got = ids_by_symbol(records)
    for symbol, last in at_stop.items():
        assert last is not None
        before_stop = {t.agg_id for t in tape.trades if t.symbol == symbol and t.agg_id <= last}
        lost = before_stop - set(got.get(symbol, [])) - covered.get(symbol, set())
        lost = {i for i in lost if i < open_from.get(symbol, last + 1)}
        assert not lost, f"{symbol}: {len(lost)} lost and not reported, e.g. {sorted(lost)[:5]}"


# ------------------------------------------------------------------------------ memory bound

BOUND = 300


@pytest.mark.kafka
@pytest.mark.timeout(300)
async def test_one_memory_bound_for_held_and_buffered_across_symbols(
    kafka_bootstrap: str, tmp_path: Path, stack_control: object
) -> None:
    """Four symbols, the broker killed for ~8 s and drops while REST is slow to help: held +
    buffered records of all symbols together never exceed kafka.buffer_max_messages."""
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
    tape = synthetic_tape(symbols=symbols, per_symbol=700, seconds=14.0, seed=21)
    async with running(
        tape, kafka_bootstrap, tmp_path, speed=1.0,
        symbols=[s.lower() for s in symbols], max_held=20_000, stall_seconds=2.0,
        kafka={"buffer_max_messages": BOUND, "request_timeout_ms": 3000},
    ) as run:  # fmt: skip
        p, emu = run.producer, run.emu
        assert p.intake.hold.limit == BOUND // 2  # max_held lowered to half the bound
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, p.intake.in_memory)
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(emu.wait_published(len(tape.trades) // 5), 30)
        await stack_control.stop("kafka", kill=True)  # type: ignore[attr-defined]
        emu.rest.lag(2.0)
        emu.drop_connections()
        await asyncio.sleep(3.0)
        emu.drop_connections()
        await asyncio.sleep(5.0)
        # data waiting and nothing acknowledged: /healthz says so (stall_seconds = 2)
        during = p.health()
        await stack_control.start("kafka")  # type: ignore[attr-defined]
        await asyncio.wait_for(emu.finished.wait(), 60)
        await _all_acked(run, tape, within=90)
        watcher.cancel()
        await asyncio.sleep(2.5)  # quiet now, nothing waiting
        after = p.health()
        status = await _stopped(run)
        deferred = _metric_total(p, "tradepipe_trades_deferred_total")
        records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 30)
    assert peak <= BOUND, f"{peak} records in memory, bound {BOUND}"
    assert not during.ok and ("stalled" in during.reason or "broker" in during.reason), during
    assert after.ok and "quiet" in after.reason, after
    assert deferred > 0, "the bound should have been reached and live trades refused"
    seen: set[tuple[bytes, bytes]] = set()
    deduped = []
    for key, value, ts in records:  # at-least-once under broker faults (docs/operations.md)
        if (key, value) not in seen:
            seen.add((key, value))
            deduped.append((key, value, ts))
    assert_exactly_once_in_order(deduped, tape)
    assert status == 0


# ------------------------------------------------------------------------------ geo-blocking


async def test_geo_blocking_is_said_once_with_the_remedy_and_healthz_keeps_saying_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Binance answers 451 to handshakes and REST (restricted region): one error line naming
    the market-data hosts, however many attempts; /healthz says why; once the block is lifted
    everything published meanwhile arrives."""
    tape = synthetic_tape(per_symbol=600, seconds=6.0, seed=8)
    with structlog.testing.capture_logs() as logs:
        async with running(tape, kafka_bootstrap, tmp_path, speed=1.0) as run:
            emu, p = run.emu, run.producer
            await asyncio.wait_for(emu.wait_published(len(tape.trades) // 4), 30)
            emu.geo_block()
            emu.drop_connections()
            await _until(lambda: emu.refused >= 3, 10.0)
            health = p.health()
            emu.geo_block(False)
            await asyncio.wait_for(emu.finished.wait(), 30)
            await _all_acked(run, tape)
            healed = p.health()
            status = await _stopped(run)
            records = await read_topic(kafka_bootstrap, run.topic, len(tape.trades), 15)
    blocked = [e for e in logs if e["event"] == "geo_blocked"]
    assert len(blocked) == 1 and blocked[0]["log_level"] == "error"
    assert "data-stream.binance.vision" in blocked[0]["remedy"]
    assert "data-api.binance.vision" in blocked[0]["remedy"]
    assert (
        not health.ok and "451" in health.reason and "data-stream.binance.vision" in health.reason
    )
    assert "geo-blocked" not in healed.reason
    assert_exactly_once_in_order(records, tape)
    assert status == 0
