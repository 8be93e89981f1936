"""Fixtures for the producer's tests: the Binance emulator on 127.0.0.1:0 (``tradepipe replay``
in-process), the producer in-process (``serve`` with a stop event, no signals), real Kafka.

- ``real_tape``: the real recorded BTCUSDT + ETHUSDT aggTrades from ``../shared/data/binance/``
  (1,227 + 506 trades; skipped, naming the path, where the data is absent).
- ``start_emulator(tape, **options)``: an :class:`~tradepipe.replay.Emulator` context
  (:func:`emulating`, as a fixture).
- ``fresh_topic``: a topic name not created yet (the producer must create it); deleted after.
- :func:`serving` (the one harness): ``serve()`` in a task, once ready; yields a
  :class:`Serving` (the :class:`Producer`, ``stopped()`` -> the exit status); the
  ``running_producer(settings)`` fixture is it, yielding the producer (``exit_status`` after).
- :func:`read_topic`: every record of a topic, from the beginning, as ``(key, value, ts)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from tests.conftest import unavailable

from tradepipe.config import Settings
from tradepipe.producer import Options, Producer, serve
from tradepipe.replay import Emulator, ReplayOptions, Tape, load_tape

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "binance"
REAL_FILES = [
    DATA / "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson",
    DATA / "cryptofeed-BINANCE-ee25be.ethusdt.aggTrade.ndjson",
]


@pytest.fixture(scope="session")
def real_tape() -> Tape:
    missing = [str(p) for p in REAL_FILES if not p.exists()]
    if missing:
        unavailable(f"real recorded data not found: {', '.join(missing)}")
    return load_tape([str(p) for p in REAL_FILES])


StartEmulator = Callable[..., contextlib.AbstractAsyncContextManager[Emulator]]


@contextlib.asynccontextmanager
async def emulating(tape: Tape, **options: Any) -> AsyncIterator[Emulator]:
    """The emulator on 127.0.0.1:0 replaying ``tape`` (``options``: :class:`ReplayOptions`)."""
    options.setdefault("port", 0)
    # fresh trade times: Kafka retention goes by record timestamps, and 2021 trades would
    # sit in segments deletable as soon as they close (see docs/testing.md, "Local stack")
    options.setdefault("rebase_time", True)
    lines: list[str] = []
    async with Emulator(tape, ReplayOptions(**options), log=lines.append) as emu:
        yield emu


@pytest.fixture
def start_emulator() -> StartEmulator:
    return emulating


@pytest.fixture
async def fresh_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    name = f"test-produce-{uuid.uuid4().hex[:10]}"
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    with contextlib.suppress(Exception):  # the broker may be down after a fault test
        await admin.start()
        await admin.delete_topics([name])
    with contextlib.suppress(Exception):
        await admin.close()


def producer_settings(
    emu: Emulator, bootstrap: str, topic: str, tmp_path: Path, **feed: Any
) -> Settings:
    symbols = feed.pop("symbols", ["btcusdt", "ethusdt"])
    return Settings().replace(
        feed={
            "symbols": symbols,
            "ws_url": emu.ws_url,
            "rest_url": emu.rest_url,
            "quarantine_path": str(tmp_path / "quarantine.ndjson"),
            "state_path": str(tmp_path / "producer-state.json"),
            "rest_weight_per_minute": 6000,
            **feed,
        },
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "request_timeout_ms": 5000},
        metrics={"listen": "127.0.0.1:0"},
    )


class Serving:
    """``serve()`` running in a task: its :class:`Producer`, its stop flag, its end."""

    def __init__(self, producer: Producer, task: asyncio.Task[int], stop: asyncio.Event) -> None:
        self.producer, self.task, self.stop = producer, task, stop
        self.status: int | None = None
        self.seen = False  # the test has awaited the end (its status, or what it raised)

    async def stopped(self, within: float = 60.0) -> int:
        """Set the stop flag; the exit status (raises what made ``serve()`` fail)."""
        self.stop.set()
        return await self.ended(within)

    async def ended(self, within: float = 60.0) -> int:
        """The end of ``serve()`` without setting the stop flag (e.g. a crash it raises)."""
        self.seen = True
        self.status = await asyncio.wait_for(asyncio.shield(self.task), within)
        return self.status


@contextlib.asynccontextmanager
async def serving(settings: Settings, **options: Any) -> AsyncIterator[Serving]:
    """``serve(settings, stop, Options(**options))`` in a task, yielded once the producer is
    ready; on exit it is stopped (its status in ``.status``) unless the test saw its end: an
    end the test did not expect (a crash) is raised here."""
    stop = asyncio.Event()
    got: asyncio.Future[Producer] = asyncio.get_running_loop().create_future()
    options.setdefault("shutdown_seconds", 30.0)
    options.setdefault("serve_metrics", False)
    opts = Options(on_ready=lambda p: got.done() or got.set_result(p), **options)
    task = asyncio.create_task(serve(settings, stop, opts))
    done, _ = await asyncio.wait([task, got], timeout=30, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()  # raises what made it exit
        raise AssertionError("serve() returned before it was ready")
    if got not in done:
        task.cancel()
        raise AssertionError("the producer did not become ready within 30 s")
    run = Serving(got.result(), task, stop)
    try:
        yield run
    finally:
        if not run.seen:
            try:
                await run.stopped()
            except TimeoutError:
                task.cancel()
                raise


RunningProducer = Callable[..., contextlib.AbstractAsyncContextManager[Producer]]


@pytest.fixture
def running_producer() -> RunningProducer:
    @contextlib.asynccontextmanager
    async def run(settings: Settings, **options: Any) -> AsyncIterator[Producer]:
        async with serving(settings, **options) as served:
            served.producer.exit_status = None  # type: ignore[attr-defined]
            yield served.producer
        served.producer.exit_status = served.status  # type: ignore[attr-defined]

    return run


async def read_topic(
    bootstrap: str, topic: str, expect: int, within: float = 30.0
) -> list[tuple[bytes, bytes, int]]:
    """Records ``(key, value, timestamp)`` from offset 0 until ``expect`` are read (then a
    short quiet period, so extra records would be seen) or ``within`` seconds."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )  # fmt: skip
    await consumer.start()
    out: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + within
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend((r.key, r.value, r.timestamp) for r in records)
            if len(out) >= expect:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return out


def ids_by_symbol(records: list[tuple[bytes, bytes, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, value, _ in records:
        out.setdefault(key.decode(), []).append(msgspec.json.decode(value)["a"])
    return out


def tape_ids(tape: Tape) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in tape.trades:
        out.setdefault(t.symbol, []).append(t.agg_id)
    return out


def assert_exactly_once_in_order(records: list[tuple[bytes, bytes, int]], tape: Tape) -> None:
    """Kafka holds exactly the tape's trades, once each, in id order per symbol."""
    got, want = ids_by_symbol(records), tape_ids(tape)
    problems = []
    for symbol in sorted(set(got) | set(want)):
        g, w = got.get(symbol, []), want.get(symbol, [])
        missing = sorted(set(w) - set(g))
        extra = sorted(set(g) - set(w))
        dups = len(g) - len(set(g))
        disorder = sum(1 for a, b in itertools.pairwise(g) if b <= a)
        if missing or extra or dups or disorder:
            problems.append(
                f"{symbol}: {len(missing)} missing {missing[:10]}, {len(extra)} unexpected, "
                f"{dups} duplicated, {disorder} out of order (got {len(g)}, want {len(w)})"
            )
    assert not problems, "; ".join(problems)


async def settled(producer: Producer, emu: Emulator, within: float = 120.0) -> None:
    """Wait until the emulator has published everything and the producer has every trade up to
    the last published id of each symbol acknowledged (live or backfilled)."""
    async with asyncio.timeout(within):
        await emu.finished.wait()
        while True:
            done = all(
                seq.last_id == emu.published.last_id(symbol) and seq.missing() is None
                for symbol, seq in producer.intake.sequencers.items()
            )
            if done and len(producer.outbox) == 0:
                return
            await asyncio.sleep(0.05)
