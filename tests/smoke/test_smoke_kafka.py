"""Smoke: the Kafka broker of scripts/stack works with aiokafka, as the producer and sink use it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

pytestmark = pytest.mark.kafka

TOPIC_ALREADY_EXISTS = 36


async def test_create_topic_with_retention_config(kafka_bootstrap: str) -> None:
    name = f"smoke-retention-{uuid.uuid4().hex[:8]}"
    configs = {"retention.ms": "300000", "segment.ms": "60000"}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
        assert [(t, err) for t, err, *_ in resp.topic_errors] == [(name, 0)]

        # "Already exists" comes back as an error code, not an exception (PIPELINE.md).
        again = await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
        assert [err for _, err, *_ in again.topic_errors] == [TOPIC_ALREADY_EXISTS]

        # The broker's metadata cache lags the controller by a moment after a create.
        for _ in range(100):
            if name in await admin.list_topics():
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"{name} created but not listed after 10 s")
        [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [resource] = described.resources
        assert resource[0] == 0, resource
        entries = {entry[0]: entry[1] for entry in resource[4]}
        assert entries["retention.ms"] == "300000"
        assert entries["segment.ms"] == "60000"
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_produce_consume_keeps_key_value_and_timestamp(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    trade_time_ms = 1_732_431_600_123  # message timestamp = trade time T, in the past
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            kafka_topic, b'{"e":"aggTrade","a":1}', key=b"BTCUSDT", timestamp_ms=trade_time_ms
        )
    finally:
        await producer.stop()
    assert meta.offset == 0
    assert meta.timestamp == trade_time_ms  # CreateTime: the broker keeps ours

    consumer = AIOKafkaConsumer(
        kafka_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(kafka_topic, 0))
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"BTCUSDT", b'{"e":"aggTrade","a":1}')
    assert msg.timestamp == trade_time_ms
    assert msg.timestamp_type == 0  # CreateTime
    assert committed == 1
