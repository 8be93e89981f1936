"""Lifecycle and observability: /metrics and /healthz in-process; sd_notify and SIGTERM on a
real ``tradepipe produce`` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from tradepipe.replay import Tape

from .conftest import (
    RunningProducer,
    StartEmulator,
    ids_by_symbol,
    producer_settings,
    read_topic,
    settled,
    tape_ids,
)

CONTRACT_METRICS = {
    "tradepipe_trades_received", "tradepipe_trades_produced", "tradepipe_malformed_messages",
    "tradepipe_ws_reconnects", "tradepipe_gaps_detected", "tradepipe_trades_backfilled",
    "tradepipe_kafka_errors", "tradepipe_buffered_messages", "tradepipe_last_trade_age_seconds",
    "tradepipe_trade_to_kafka_seconds",
}  # fmt: skip


async def test_metrics_parse_and_healthz_stays_200_in_a_quiet_market(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    async with start_emulator(real_tape, speed=0) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path, stall_seconds=1.0)
        async with running_producer(settings, serve_metrics=True) as producer:
            await settled(producer, emu)
            port = producer.server.port  # type: ignore[attr-defined]
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/healthz") as resp:
                    assert resp.status == 200, await resp.text()
                async with http.get(f"{base}/metrics") as resp:
                    families = {
                        f.name: f for f in text_string_to_metric_families(await resp.text())
                    }
                # the tape is over: nothing new is acknowledged, yet nothing waits either: a
                # quiet market is healthy (a stall with data waiting is 503: test_no_gap.py)
                await asyncio.sleep(1.5)
                async with http.get(f"{base}/healthz") as resp:
                    assert resp.status == 200
                    assert "quiet: nothing waiting" in await resp.text()
    assert CONTRACT_METRICS <= set(families)
    produced = {
        s.labels["symbol"]: s.value
        for s in families["tradepipe_trades_produced"].samples
        if s.name.endswith("_total")
    }
    assert produced == {"BTCUSDT": 1227, "ETHUSDT": 506}
    latency_count = next(
        s.value for s in families["tradepipe_trade_to_kafka_seconds"].samples
        if s.name.endswith("_count")
    )  # fmt: skip
    assert latency_count == 1733


async def _recv_all(sock: socket.socket, into: list[str]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data = await loop.sock_recv(sock, 4096)
        into.append(data.decode())


async def _wait_for(pred: object, within: float) -> None:
    deadline = time.monotonic() + within
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_sd_notify_and_sigterm_flush_everything_received(
    real_tape: Tape,
    start_emulator: StartEmulator,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    messages: list[str] = []
    receiver = asyncio.create_task(_recv_all(notify, messages))
    try:
        async with start_emulator(real_tape, speed=3.0) as emu:
            env = {
                "PATH": os.environ.get("PATH", ""),
                "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                "WATCHDOG_USEC": "1000000",
                "TRADEPIPE_FEED_SYMBOLS": "btcusdt,ethusdt",
                "TRADEPIPE_FEED_WS_URL": emu.ws_url,
                "TRADEPIPE_FEED_REST_URL": emu.rest_url,
                "TRADEPIPE_FEED_QUARANTINE_PATH": str(tmp_path / "q.ndjson"),
                "TRADEPIPE_FEED_STATE_PATH": str(tmp_path / "producer-state.json"),
                "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "TRADEPIPE_KAFKA_TOPIC": fresh_topic,
                "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tradepipe.cli", "produce",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            await _wait_for(lambda: any("READY=1" in m for m in messages), 30)
            await _wait_for(lambda: any(m == "WATCHDOG=1" for m in messages), 5)
            await asyncio.wait_for(emu.wait_published(len(real_tape.trades) // 3), 60)
            proc.send_signal(signal.SIGTERM)  # mid-stream
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, out.decode()[-3000:]
            await _wait_for(lambda: any(m.startswith("STOPPING=1") for m in messages), 2)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver  # unregister the fd from the loop before closing it
        notify.close()
    lines = [msgspec.json.decode(line) for line in out.splitlines() if line.startswith(b"{")]
    assert len(lines) == len(out.splitlines()), "every log line is JSON"
    stopped = next(line for line in lines if line["msg"] == "stopped")
    records = await read_topic(kafka_bootstrap, fresh_topic, stopped["produced"])
    assert len(records) == stopped["produced"] > 0
    got = ids_by_symbol(records)
    for symbol, ids in got.items():  # a gap-free prefix of the tape, each trade once
        assert ids == tape_ids(real_tape)[symbol][: len(ids)]
