"""Restarts and deploys: a real ``tradepipe produce`` process stopped with SIGTERM or killed
with SIGKILL mid-stream, started again while the market keeps trading, and once started only
after the market went quiet. Every published trade must reach Kafka (duplicates across a
restart are allowed and counted); the tally is the emulator's own ``record`` of what it sent.

The emulator loops the real tape (ids and times continue), so the market never runs out; the
kill points and downtimes come from a seeded generator, and one test runs many restarts, so a
race that loses trades one restart in ten cannot pass by luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import StackControl

from tradepipe.replay import Emulator, Tape

from .conftest import StartEmulator

ROOT = Path(__file__).resolve().parents[2]


class ProducerProcess:
    """One ``tradepipe produce`` after another, all writing one log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.exits: list[tuple[str, int]] = []
        self._offset = 0

    async def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tradepipe.cli", "produce",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env={**self.env, "PYTHONUNBUFFERED": "1"}, cwd=ROOT,
            )  # fmt: skip

    def events(self, name: str, *, current: bool = True) -> list[dict[str, Any]]:
        out = []
        with self.log_path.open("rb") as f:
            f.seek(self._offset if current else 0)
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith("{") and f'"{name}"' in line:
                    obj = json.loads(line)
                    if obj.get("msg") == name:
                        out.append(obj)
        return out

    async def wait_event(self, name: str, within: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[0]
            assert self.proc is not None
            assert self.proc.returncode is None, f"exited {self.proc.returncode}:\n{self.tail()}"
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name!r} within {within} s:\n{self.tail()}")

    async def stop(self, how: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(how)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        self.exits.append((how.name, code))
        return code

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def producer_env(emu: Emulator, bootstrap: str, topic: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "TRADEPIPE_FEED_SYMBOLS": "btcusdt,ethusdt",
        "TRADEPIPE_FEED_WS_URL": emu.ws_url,
        "TRADEPIPE_FEED_REST_URL": emu.rest_url,
        "TRADEPIPE_FEED_QUARANTINE_PATH": str(tmp_path / "quarantine.ndjson"),
        "TRADEPIPE_FEED_STATE_PATH": str(tmp_path / "state" / "producer-state.json"),
        "TRADEPIPE_FEED_REST_WEIGHT_PER_MINUTE": "6000",
        "TRADEPIPE_FEED_BACKOFF_MAX_SECONDS": "1",
        "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPIPE_KAFKA_TOPIC": topic,
        "TRADEPIPE_KAFKA_REQUEST_TIMEOUT_MS": "5000",
        "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
        "TRADEPIPE_LOG_LEVEL": "info",
    }


def published_ids(record: Path) -> set[tuple[str, int]]:
    out = set()
    for line in record.read_bytes().splitlines():
        if line.strip():
            e = json.loads(line)
            out.add((e["s"], e["a"]))
    return out


async def topic_ids(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    """(symbol, a) of every record in the topic, in log order (duplicates kept)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )  # fmt: skip
    await consumer.start()
    out: list[tuple[str, int]] = []
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()) or [])
        while not ends:
            await asyncio.sleep(0.1)
            ends = await consumer.end_offsets(list(consumer.assignment()))
        while not await _at_end(consumer, ends):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    e = json.loads(r.value)
                    out.append((e["s"], e["a"]))
    finally:
        await consumer.stop()
    return out


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def wait_all_in_kafka(
    bootstrap: str, topic: str, want: set[tuple[str, int]], within: float
) -> list[tuple[str, int]]:
    deadline = time.monotonic() + within
    while True:
        got = await topic_ids(bootstrap, topic)
        if want <= set(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1.0)


def missing_report(want: set[tuple[str, int]], got: list[tuple[str, int]]) -> str:
    missing = sorted(want - set(got))
    runs: list[tuple[str, int, int]] = []
    for symbol, a in missing:
        if runs and runs[-1][0] == symbol and runs[-1][2] == a - 1:
            runs[-1] = (symbol, runs[-1][1], a)
        else:
            runs.append((symbol, a, a))
    return f"{len(missing)} of {len(want)} published trades not in Kafka; runs {runs[:12]}"


RESTARTS = 30


@pytest.mark.timeout(400)
async def test_sigterm_and_sigkill_restarts_lose_nothing(
    real_tape: Tape,
    start_emulator: StartEmulator,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    """30 seeded restarts (SIGTERM and SIGKILL, alternating at random), the market trading
    through each downtime; then a SIGKILL, the market goes quiet, and the last start comes
    only after that: every published trade is in Kafka."""
    rng = random.Random(12)
    record = tmp_path / "published.ndjson"
    async with start_emulator(real_tape, speed=4.0, loop=True, record_path=str(record)) as emu:
        producer = ProducerProcess(
            producer_env(emu, kafka_bootstrap, fresh_topic, tmp_path), tmp_path / "producer.log"
        )
        await producer.start()
        await producer.wait_event("ready")
        for _ in range(RESTARTS):
            await asyncio.sleep(rng.uniform(0.3, 1.2))  # mid-stream
            how = rng.choice([signal.SIGTERM, signal.SIGKILL])
            code = await producer.stop(how)
            assert code in ((0, 1) if how is signal.SIGTERM else (-9,)), producer.tail()
            await asyncio.sleep(rng.uniform(0.2, 1.5))  # the market keeps trading
            await producer.start()
            await producer.wait_event("ready")
        # the quiet case: killed mid-stream, the market stops, started only after that
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        await producer.stop(signal.SIGKILL)
        emu.pause()
        await asyncio.sleep(1.0)
        await producer.start()
        await producer.wait_event("ready")
        want = published_ids(record)
        got = await wait_all_in_kafka(kafka_bootstrap, fresh_topic, want, 60)
        code = await producer.stop(signal.SIGTERM)
    report = missing_report(want, got)
    duplicates = sum(n - 1 for n in Counter(got).values())
    print(f"{report}; {duplicates} duplicates in Kafka; exits {Counter(producer.exits)}")
    assert want <= set(got), report
    assert set(got) <= want, "Kafka holds trades the emulator never published"
    assert code == 0, producer.tail()
    resumed = [e for e in producer.events("resumed", current=False) if e["symbol"] == "BTCUSDT"]
    assert len(resumed) == RESTARTS + 2, "every start logs where it resumed"
    assert resumed[0]["source"] == "none" and all(e["source"] != "none" for e in resumed[1:])
    assert any(e["source"] == "topic" for e in resumed), "the topic's tail was read"


@pytest.mark.kafka
@pytest.mark.timeout(400)
async def test_kafka_down_before_start_back_two_minutes_later(
    real_tape: Tape,
    start_emulator: StartEmulator,
    kafka_bootstrap: str,
    fresh_topic: str,
    stack_control: StackControl,
    tmp_path: Path,
) -> None:
    """The broker is down when a real ``tradepipe produce`` starts: READY comes anyway (no
    systemd start timeout, no restart), trades are read and held within the buffer bound;
    the broker returns two minutes later, after the market went quiet, and every trade the
    emulator published is in Kafka."""
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    messages: list[str] = []
    receiver = asyncio.create_task(_receive(notify, messages))
    record = tmp_path / "published.ndjson"
    try:
        await stack_control.stop("kafka", kill=True)
        async with start_emulator(real_tape, speed=2.0, record_path=str(record)) as emu:
            env = producer_env(emu, kafka_bootstrap, fresh_topic, tmp_path)
            env |= {"NOTIFY_SOCKET": str(notify_path), "TRADEPIPE_KAFKA_BUFFER_MAX_MESSAGES": "300",
                    "TRADEPIPE_FEED_RESUME_TIMEOUT_SECONDS": "5"}  # fmt: skip
            producer = ProducerProcess(env, tmp_path / "producer.log")
            down_at = time.monotonic()
            await producer.start()
            await producer.wait_event("ready", 30)
            ready_after = time.monotonic() - down_at
            assert any(m.startswith("READY=1") for m in messages)
            await asyncio.wait_for(emu.finished.wait(), 120)  # the market goes quiet
            await asyncio.sleep(max(0.0, 120 - (time.monotonic() - down_at)))
            assert producer.proc is not None and producer.proc.returncode is None
            held = await _metrics((await producer.wait_event("metrics_listening"))["url"])
            await stack_control.start("kafka")
            want = published_ids(record)
            got = await wait_all_in_kafka(kafka_bootstrap, fresh_topic, want, 90)
            code = await producer.stop(signal.SIGTERM)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        notify.close()
    report = missing_report(want, got)
    print(f"ready {ready_after:.1f} s after start with Kafka down; {report}")
    assert want <= set(got), report
    assert code == 0, producer.tail()
    assert producer.events("resume_topic_unreadable", current=False), "resume fell back"
    assert len(producer.events("ready", current=False)) == 1, "one process: no restart"
    assert ready_after < 20
    # while the broker was away: trades held within the bound, the rest refused for REST
    assert 0 < held["tradepipe_buffered_messages"] <= 1.5 * 300 + 20_000
    assert held["tradepipe_trades_deferred_total"] > 0
    assert held.get("tradepipe_trades_produced_total", 0.0) == 0, "nothing acknowledged yet"


async def _metrics(url: str) -> dict[str, float]:
    """The producer's /metrics, summed over labels."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def _receive(sock: socket.socket, into: list[str]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        into.append((await loop.sock_recv(sock, 4096)).decode())
