"""`tradepipe produce` fed every kind of malformed frame by the emulator (real protocol, real
Kafka): it keeps running, quarantines and counts each one by reason, and delivers every valid
trade exactly once, in order (issue 11)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from tests.core.fuzzing import bad_lines

from tradepipe.replay import Tape
from tradepipe.replay.malformed import KINDS

from .conftest import (
    RunningProducer,
    StartEmulator,
    assert_exactly_once_in_order,
    producer_settings,
    read_topic,
)


def malformed_total(producer: object) -> float:
    registry = producer.metrics.registry  # type: ignore[attr-defined]
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "tradepipe_malformed_messages"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_every_malformed_kind_and_fuzzed_lines_never_stop_the_feed(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    # the fuzz catalogue's lines (one field replaced), as text frames: valid UTF-8 only,
    # since a WebSocket client closes the connection on a text frame that is not
    fuzzed = [line for line in bad_lines(seed=5, count=600) if _utf8(line)][:400]
    count = 20 * len(KINDS)
    async with start_emulator(real_tape, speed=15.0, malformed=count, seed=3) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path)
        async with running_producer(settings) as producer:
            await asyncio.wait_for(emu.wait_published(len(real_tape.trades) // 3), 30)
            for line in fuzzed:
                assert emu.inject_raw(line) == 1
            await asyncio.wait_for(emu.finished.wait(), 90)
            records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades))
            sent = emu.status()["malformed_sent"] + len(fuzzed)
            refused = malformed_total(producer)
            reconnects = producer.metrics.registry.get_sample_value("tradepipe_ws_reconnects_total")
    assert_exactly_once_in_order(records, real_tape)  # every valid trade, once, in order
    assert emu.status()["malformed_sent"] == count and len(fuzzed) == 400
    assert refused == sent
    lines = (tmp_path / "quarantine.ndjson").read_bytes().splitlines()
    assert len(lines) == sent
    reasons = {msgspec.json.decode(line)["reason"] for line in lines}
    assert {"too_large", "too_deep", "empty", "bad_id", "bad_time", "bad_decimal"} <= reasons
    assert max(len(line) for line in lines) < 200_000  # raw capped at 64 KiB (JSON-escaped)
    assert not reconnects  # no frame made the producer drop its connection


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
