"""Emulator -> producer -> real Kafka: every trade once, in order, with key and timestamp."""

from __future__ import annotations

from pathlib import Path

import msgspec
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tradepipe.core import Trade, parse_event
from tradepipe.replay import Tape

from .conftest import (
    RunningProducer,
    StartEmulator,
    assert_exactly_once_in_order,
    producer_settings,
    read_topic,
)


async def test_every_trade_arrives_once_in_order_with_key_and_timestamp(
    real_tape: Tape,
    start_emulator: StartEmulator,
    running_producer: RunningProducer,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    async with start_emulator(real_tape, speed=0) as emu:
        settings = producer_settings(emu, kafka_bootstrap, fresh_topic, tmp_path)
        async with running_producer(settings) as producer:
            records = await read_topic(kafka_bootstrap, fresh_topic, len(real_tape.trades))
        assert producer.exit_status == 0  # type: ignore[attr-defined]
    assert_exactly_once_in_order(records, real_tape)
    by_id = {(t.symbol, t.agg_id): t for t in real_tape.trades}
    for key, value, timestamp in records:
        trade = parse_event(value)
        assert key == trade.symbol.encode()
        assert timestamp == trade.time_ms
        # served with fresh times (rebase_time), otherwise exactly the recorded trade
        assert _timeless(trade) == _timeless(by_id[(trade.symbol, trade.agg_id)])
        assert msgspec.json.decode(value)["e"] == "aggTrade"  # the raw event, not the wrapper
    assert producer.metrics.reconnects._value.get() == 0
    # the topic was created by the producer with a retention that can act
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [resp] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, fresh_topic)]
        )
        configs = {name: value for name, value, *_ in resp.resources[0][4]}
    finally:
        await admin.close()
    assert configs["retention.ms"] == "300000"
    assert configs["segment.ms"] == "60000"


def _timeless(t: Trade) -> tuple[object, ...]:
    return (t.symbol, t.agg_id, t.price, t.quantity, t.first_id, t.last_id, t.buyer_is_maker)
