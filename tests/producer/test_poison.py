"""Poison records: values Kafka refuses for ever go to the quarantine with their reason, counted
and logged, and everything else flows -- against the real broker, and through the feed.

- a trade time two hours ahead: Kafka refuses it (``message.timestamp.after.max.ms``, 1 h);
- a 2 MB value: over ``kafka.max_batch_size`` (and the broker's ``message.max.bytes``);
- 300 KB: over ``max_batch_size`` but under the broker's limit, still refused locally.
"""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal
from pathlib import Path

import msgspec

from tradepipe.config import KafkaSettings
from tradepipe.core import Trade
from tradepipe.producer import KafkaOutput, Outbox, ProducerMetrics, Record
from tradepipe.producer.publisher import Publisher
from tradepipe.producer.quarantine import Quarantine
from tradepipe.replay import tape_of

from .conftest import RunningProducer, StartEmulator, ids_by_symbol, producer_settings, read_topic

HOUR_MS = 3_600_000


def value(agg_id: int, t: int, pad: int = 0) -> bytes:
    obj = {"e": "aggTrade", "E": t, "s": "BTCUSDT", "a": agg_id, "p": "1.5", "q": "2",
           "f": agg_id, "l": agg_id, "T": t, "m": False, "M": True}  # fmt: skip
    if pad:
        obj["x"] = "x" * pad
    return msgspec.json.encode(obj)


def quarantined(path: Path) -> dict[int, str]:
    """Quarantined trade id -> reason. The raw text is a record's value or a whole message the
    intake rejected, capped at the parser's ``MAX_LINE_BYTES`` (so maybe not whole JSON): the id
    is read from its ``"a":`` field, which comes before any padding."""
    out = {}
    for line in path.read_bytes().splitlines():
        entry = msgspec.json.decode(line)
        found = re.search(r'"a":(\d+)', entry["raw"])
        assert found is not None, entry["raw"][:200]
        out[int(found.group(1))] = entry["reason"]
    return out


async def test_refused_records_are_quarantined_and_the_rest_is_delivered(
    kafka_bootstrap: str, fresh_topic: str, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    poison = {4: now + 2 * HOUR_MS, 7: None, 9: None}  # id -> time ahead / padded
    records = []
    for i in range(1, 13):
        t = poison.get(i) or now
        pad = {7: 2_000_000, 9: 300_000}.get(i, 0)
        records.append(Record("BTCUSDT", i, t, value(i, t, pad), received_at=time.monotonic()))
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=fresh_topic,
                             request_timeout_ms=5000)  # fmt: skip
    sink = KafkaOutput(settings)
    outbox = Outbox(1000)
    metrics = ProducerMetrics()
    qpath = tmp_path / "quarantine.ndjson"
    settled: list[int] = []
    publisher = Publisher(
        sink, outbox, metrics, quarantine=Quarantine(qpath),
        on_settled=lambda recs: settled.extend(r.agg_id for r in recs),
    )  # fmt: skip
    task = asyncio.create_task(publisher.run())
    try:
        outbox.extend(records[:10])  # one chunk with all three poison records
        async with asyncio.timeout(60):
            await outbox.wait_empty()
            outbox.extend(records[10:])  # the producer still works afterwards
            await outbox.wait_empty()
    finally:
        task.cancel()
        await sink.stop()
    got = await read_topic(kafka_bootstrap, fresh_topic, 9, 20)
    assert ids_by_symbol(got) == {"BTCUSDT": [1, 2, 3, 5, 6, 8, 10, 11, 12]}, "in order, once"
    assert quarantined(qpath) == {
        4: "kafka_invalid_timestamp", 7: "record_too_large", 9: "record_too_large"
    }  # fmt: skip
    assert sorted(settled) == list(range(1, 13)), "every record is done with (state file)"
    sample = metrics.registry.get_sample_value
    assert sample("tradepipe_trades_quarantined_total",
                  {"symbol": "BTCUSDT", "reason": "kafka_invalid_timestamp"}) == 1  # fmt: skip
    assert sample("tradepipe_trades_quarantined_total",
                  {"symbol": "BTCUSDT", "reason": "record_too_large"}) == 2  # fmt: skip
    assert sample("tradepipe_trades_produced_total", {"symbol": "BTCUSDT"}) == 9


async def test_poison_in_the_feed_is_quarantined_and_the_rest_flows(
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    """Over the emulator's socket: a trade timed two hours ahead and a 2 MB trade arrive live
    (in sequence, between two stretches of the tape); both end in the quarantine, counted, and
    every trade of the tape reaches Kafka in order."""
    t0 = int(time.time() * 1000)

    def trade(agg_id: int, t: int) -> Trade:
        return Trade("BTCUSDT", agg_id, Decimal("100.5"), Decimal("0.25"), agg_id, agg_id, t,
                     agg_id % 2 == 0)  # fmt: skip

    first = [trade(1000 + i, t0 + 10 * i) for i in range(100)]  # ids 1000..1099, 1 s
    second = [trade(1102 + i, t0 + 4_000 + 10 * i) for i in range(100)]  # after a 3 s pause
    tape = tape_of([*first, *second])
    qpath = tmp_path / "quarantine.ndjson"
    async with start_emulator(tape, speed=1.0) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path,
                                     symbols=["btcusdt"])  # fmt: skip
        async with running_producer(settings) as producer:
            await asyncio.wait_for(emu.wait_published(100), 30)
            now = int(time.time() * 1000)
            for raw in (value(1100, now + 2 * HOUR_MS), value(1101, now, pad=2_000_000)):
                wrapped = b'{"stream":"btcusdt@aggTrade","data":' + raw + b"}"
                assert emu.inject_raw(wrapped) == 1
            await asyncio.wait_for(emu.finished.wait(), 30)
            seq = producer.intake.sequencers["BTCUSDT"]
            async with asyncio.timeout(60):
                while True:
                    if seq.last_id == 1201 and seq.missing() is None and not producer.outbox:
                        break
                    await asyncio.sleep(0.05)
            sample = producer.metrics.registry.get_sample_value
            counted = sum(
                sample("tradepipe_trades_quarantined_total", {"symbol": "BTCUSDT", "reason": r})
                or 0
                for r in ("kafka_invalid_timestamp", "record_too_large")
            )
            malformed = sum(
                s.value for m in producer.metrics.malformed.collect() for s in m.samples
                if s.name.endswith("_total")
            )  # fmt: skip
            reconnects = sample("tradepipe_ws_reconnects_total")
        records = await read_topic(kafka_bootstrap, fresh_topic, 200, 15)
    # the rest flows: every trade of the tape, once, in order
    assert ids_by_symbol(records) == {"BTCUSDT": [t.agg_id for t in tape.trades]}
    # both poison trades were quarantined (by the publisher today; a stricter parser may
    # reject them first, as malformed -- quarantined and counted either way)
    assert set(quarantined(qpath)) == {1100, 1101}
    assert counted + malformed == 2
    assert reconnects == 0, "a 2 MB frame is within the WebSocket's max_size (4 MiB)"


async def test_a_frame_over_max_size_closes_the_connection_and_nothing_is_lost(
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    """A 5 MiB frame is over the WebSocket client's ``max_size`` (4 MiB): the client closes
    the connection (1009, message too big), the feed reconnects, and REST fills in whatever
    was published meanwhile -- a deliberate, counted reconnect, not a crash."""
    t0 = int(time.time() * 1000)
    trades = [
        Trade(
            "BTCUSDT",
            5000 + i,
            Decimal("7.5"),
            Decimal("1"),
            5000 + i,
            5000 + i,
            t0 + (10 * i if i < 100 else 3_000 + 10 * i),
            i % 3 == 0,
        )
        for i in range(200)
    ]
    tape = tape_of(trades)
    async with start_emulator(tape, speed=1.0) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path,
                                     symbols=["btcusdt"], backoff_max_seconds=0.5)  # fmt: skip
        async with running_producer(settings) as producer:
            await asyncio.wait_for(emu.wait_published(100), 30)
            huge = value(4999, int(time.time() * 1000), pad=5 * 2**20)
            assert emu.inject_raw(b'{"stream":"btcusdt@aggTrade","data":' + huge + b"}") == 1
            await asyncio.wait_for(emu.finished.wait(), 30)
            seq = producer.intake.sequencers["BTCUSDT"]
            async with asyncio.timeout(60):
                while True:
                    if seq.last_id == 5199 and seq.missing() is None and not producer.outbox:
                        break
                    await asyncio.sleep(0.05)
            reconnects = producer.metrics.registry.get_sample_value("tradepipe_ws_reconnects_total")
        records = await read_topic(kafka_bootstrap, fresh_topic, 200, 15)
    assert ids_by_symbol(records) == {"BTCUSDT": list(range(5000, 5200))}
    assert reconnects == 1
