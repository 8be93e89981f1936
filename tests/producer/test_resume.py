"""Resume against a real broker: foreign and absurd records in the topic cannot poison the
sequencer, and a resume further behind than ``feed.max_resume_trades`` is bounded and counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from tradepipe.config import KafkaSettings
from tradepipe.producer import ensure_topic
from tradepipe.producer.resume import choose
from tradepipe.producer.state import StateFile
from tradepipe.replay import Tape

from .conftest import RunningProducer, StartEmulator, ids_by_symbol, producer_settings, read_topic


async def _write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    await ensure_topic(KafkaSettings(bootstrap_servers=bootstrap, topic=topic))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value, ts in records:
            await producer.send_and_wait(topic, value, key=key, timestamp_ms=ts)
    finally:
        await producer.stop()


async def test_foreign_and_absurd_records_in_the_topic_do_not_poison_the_resume(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    now = int(time.time() * 1000)

    def trade(symbol: str, agg_id: int | str) -> bytes:
        return msgspec.json.encode({"e": "aggTrade", "s": symbol, "a": agg_id, "T": now})

    await _write(kafka_bootstrap, fresh_topic, [
        (b"BTCUSDT", b"\xff not json", now),
        (b"BTCUSDT", b'{"e":"aggTrade","s":"BTCUSDT","a":1180591620717411303424,"T":1}', 1),
        (b"BTCUSDT", trade("BTCUSDT", "665000000"), now),  # an id that is a string
        (b"ETHUSDT", trade("ETHUSDT", 291000000), now + 1),  # timestamp is not its T
        # well-formed, but far past anything the exchange has: it would make every real
        # trade a duplicate; the REST check refuses it
        (b"BTCUSDT", trade("BTCUSDT", 10**15), now),
    ])  # fmt: skip
    async with start_emulator(real_tape, speed=10.0, start_now=True) as emu:
        await asyncio.wait_for(emu.wait_published(20), 30)
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path)
        with capture_logs() as logs:
            async with running_producer(settings) as producer:
                await asyncio.wait_for(emu.finished.wait(), 120)
                deadline = time.monotonic() + 60
                while any(
                    seq.last_id != emu.published.last_id(symbol)
                    for symbol, seq in producer.intake.sequencers.items()
                ) or len(producer.outbox):
                    assert time.monotonic() < deadline, "the producer did not catch up"
                    await asyncio.sleep(0.1)
        records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades), 10)
    events = [e["event"] for e in logs]
    assert events.count("resume_foreign_record") == 4
    ahead = [e for e in logs if e["event"] == "resume_point_ahead_of_exchange"]
    assert [(e["symbol"], e["last_id"], e["log_level"]) for e in ahead] == [
        ("BTCUSDT", 10**15, "error")
    ]
    resumed = {e["symbol"]: e for e in logs if e["event"] == "resumed"}
    assert resumed["BTCUSDT"]["source"] == "none" and resumed["ETHUSDT"]["source"] == "none"
    # the real trades flowed (a fresh start: from the first live trade to the tape's end)
    ours = ids_by_symbol(records[5:])
    for symbol, (lo, hi) in ((s, real_tape.id_span(s)) for s in ("BTCUSDT", "ETHUSDT")):
        got = ours[symbol]
        assert got == list(range(got[0], hi + 1)), f"{symbol}: not a gap-free run to the end"
        assert lo <= got[0]


async def test_a_resume_further_behind_than_max_resume_trades_is_bounded_and_counted(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    """The state file says BTCUSDT stopped at the tape's first id; the market has moved on by
    1,226 trades and gone quiet. With max_resume_trades=100 only the newest 100 are fetched;
    the 1,126 before them are counted in tradepipe_gap_unfilled_trades_total and logged."""
    first, last = real_tape.id_span("BTCUSDT")
    state_path = tmp_path / "state.json"
    state = StateFile(state_path, fresh_topic, ["btcusdt"], {"BTCUSDT": first})
    state._dirty = True  # written as a previous run would have
    assert state.flush()
    async with start_emulator(real_tape, speed=0, start_now=True) as emu:
        await asyncio.wait_for(emu.finished.wait(), 30)
        settings = producer_settings(
            emu, kafka_bootstrap, fresh_topic, tmp_path, symbols=["btcusdt"],
            state_path=str(state_path), max_resume_trades=100,
        )  # fmt: skip
        with capture_logs() as logs:
            async with running_producer(settings) as producer:
                seq = producer.intake.sequencers["BTCUSDT"]
                deadline = time.monotonic() + 60
                while seq.last_id != last or len(producer.outbox):
                    assert time.monotonic() < deadline, f"stuck at {seq.last_id}"
                    await asyncio.sleep(0.1)
                unfilled = producer.metrics.registry.get_sample_value(
                    "tradepipe_gap_unfilled_trades_total", {"symbol": "BTCUSDT"}
                )
        records = await read_topic(kafka_bootstrap, fresh_topic, 100, 10)
    assert ids_by_symbol(records) == {"BTCUSDT": list(range(last - 99, last + 1))}
    skipped = last - 100 - first
    assert skipped == 1126 and unfilled == skipped
    gap = [e for e in logs if e["event"] == "gap_unfilled"]
    assert [(e["first"], e["last"], e["count"]) for e in gap] == [(first + 1, last - 100, skipped)]
    assert gap[0]["log_level"] == "error"


@pytest.mark.parametrize(
    ("topic", "state", "newest", "want"),
    [
        (None, None, 500, (None, "none", 0)),  # a first start
        (100, 90, 500, (100, "topic", 0)),  # the newer wins: the topic
        (90, 100, 500, (100, "state", 0)),  # ... or the state file (topic records deleted)
        (100, 100, 500, (100, "topic", 0)),
        (None, 100, None, (100, "state", 0)),  # broker down, REST silent: unchecked
        (10**15, 100, 500, (100, "state", 0)),  # an absurd topic id: the state file instead
        (10**15, 10**14, 500, (None, "none", 0)),  # nothing sane: start from the live stream
        (100, None, 1000, (500, "topic", 400)),  # 900 behind, bound 500: skip 400
        (100, None, 600, (100, "topic", 0)),  # exactly at the bound
    ],
)
def test_choose(
    topic: int | None, state: int | None, newest: int | None, want: tuple[int | None, str, int]
) -> None:
    r = choose("BTCUSDT", topic, state, newest, max_trades=500)
    assert (r.last_id, r.source, r.skipped) == want
