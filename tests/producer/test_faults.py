"""Faults on the feed side, each ending in exact equality: Kafka holds every trade the emulator
published, exactly once and in id order per symbol.

The emulator replays the real recorded BTCUSDT + ETHUSDT trades (91 s of market time) at 15x
speed, so each fault lands mid-stream; trades published while the producer is disconnected are
only available from the emulator's REST endpoint, as on Binance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from tradepipe.replay import Emulator, Tape

from .conftest import (
    RunningProducer,
    StartEmulator,
    assert_exactly_once_in_order,
    producer_settings,
    read_topic,
)

SPEED = 15.0


async def _at_fraction(emu: Emulator, tape: Tape, fraction: float) -> None:
    await asyncio.wait_for(emu.wait_published(int(len(tape.trades) * fraction)), 30)


async def _finish(emu: Emulator) -> None:
    await asyncio.wait_for(emu.finished.wait(), 60)


def _metric(producer: object, name: str, **labels: str) -> float:
    value = producer.metrics.registry.get_sample_value(name, labels or None)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


async def test_connection_drops_are_backfilled_exactly_once(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    async with start_emulator(real_tape, speed=SPEED) as emu:
        settings = producer_settings(
            emu, kafka_bootstrap, fresh_topic, tmp_path, backoff_max_seconds=0.5
        )
        async with running_producer(settings) as producer:
            for fraction in (0.2, 0.45, 0.7):
                await _at_fraction(emu, real_tape, fraction)
                # the previous drop's reconnect may still be in its (jittered) backoff
                async with asyncio.timeout(15):
                    while not emu.connections:  # noqa: ASYNC110 - the emulator has no event
                        await asyncio.sleep(0.01)
                assert emu.drop_connections() == 1
                # keep publishing while the producer is away (the reconnect after a connection
                # that delivered goes at once, so refuse it a while): those trades exist only
                # in REST
                emu.refuse_connections(0.5)
                await asyncio.sleep(0.5)
            await _finish(emu)
            records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades))
            backfilled = _metric(producer, "tradepipe_trades_backfilled_total", symbol="BTCUSDT")
            reconnects = _metric(producer, "tradepipe_ws_reconnects_total")
    assert_exactly_once_in_order(records, real_tape)
    assert reconnects >= 3
    assert backfilled > 0, "the drops should have cost live trades that REST brought back"


async def test_garbage_and_pings_are_quarantined_and_never_stop_the_feed(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    garbage = [
        b"not json at all",
        b"[1,2,3]",
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT","a":1}}',
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591000,"s":"BTCUSDT",'
        b'"a":5,"p":"1e5","q":"0.1","f":1,"l":1,"T":1617566591000,"m":true,"M":true}}',
        b'{"e":"trade","s":"BTCUSDT"}',
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591000,"s":"ETHUSDT",'
        b'"a":5,"p":"1.5","q":"0.1","f":1,"l":1,"T":1617566591000,"m":true,"M":true}}',
        b"{truncated",
    ]
    async with start_emulator(real_tape, speed=SPEED, ping_interval=0.5) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path)
        async with running_producer(settings) as producer:
            await _at_fraction(emu, real_tape, 0.3)
            for raw in garbage:
                assert emu.inject_raw(raw) == 1
            await _finish(emu)
            records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades))
            reasons = {
                r: _metric(producer, "tradepipe_malformed_messages_total", reason=r)
                for r in ("invalid_json", "not_an_object", "missing_field", "bad_decimal",
                          "wrong_event", "bad_symbol")
            }  # fmt: skip
            reconnects = _metric(producer, "tradepipe_ws_reconnects_total")
    assert_exactly_once_in_order(records, real_tape)
    assert reasons == {
        "invalid_json": 2, "not_an_object": 1, "missing_field": 1, "bad_decimal": 1,
        "wrong_event": 1, "bad_symbol": 1,
    }  # fmt: skip
    quarantined = [
        msgspec.json.decode(line)
        for line in (tmp_path / "quarantine.ndjson").read_bytes().splitlines()
    ]
    assert [q["reason"] for q in quarantined] == [
        "invalid_json", "not_an_object", "missing_field", "bad_decimal", "wrong_event",
        "bad_symbol", "invalid_json",
    ]  # fmt: skip
    assert quarantined[0]["raw"] == "not json at all"
    # pings every 0.5 s were answered: the emulator closes connections that do not pong
    assert reconnects == 0


async def test_24h_expiry_and_server_shutdown_lose_nothing(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    async with start_emulator(real_tape, speed=SPEED) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path)
        async with running_producer(settings) as producer:
            await _at_fraction(emu, real_tape, 0.25)
            assert emu.expire_connections() == 1  # the server's 24-hour close
            await _at_fraction(emu, real_tape, 0.6)
            assert emu.send_server_shutdown() == 1  # "reconnect now"
            await _finish(emu)
            records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades))
            rollovers = _metric(producer, "tradepipe_ws_rollovers_total")
    assert_exactly_once_in_order(records, real_tape)
    assert rollovers == 1  # serverShutdown: a new connection opened before the old one closed


async def test_proactive_rollover_overlaps_connections_without_duplicates(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    async with start_emulator(real_tape, speed=SPEED) as emu:
        settings = producer_settings(
            emu, kafka_bootstrap, fresh_topic, tmp_path, rollover_seconds=1.0
        )
        async with running_producer(settings) as producer:
            await _finish(emu)
            records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades))
            rollovers = _metric(producer, "tradepipe_ws_rollovers_total")
            duplicates = _metric(producer, "tradepipe_duplicate_trades_total", symbol="BTCUSDT")
    assert_exactly_once_in_order(records, real_tape)
    assert rollovers >= 3
    assert duplicates > 0, "overlapping connections deliver some trades twice; none may pass"
