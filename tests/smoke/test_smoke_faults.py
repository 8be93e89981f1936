"""Smoke: ``stack_control`` kills a component mid-test and starts it again, data and port kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pymysql
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .test_smoke_mysql import connect_kwargs


@pytest.mark.mysql
async def test_mysql_killed_and_restarted_keeps_data(mysql_db: str, stack_control: Any) -> None:
    def query(sql: str) -> Any:
        kwargs = connect_kwargs(mysql_db)
        kwargs["database"] = kwargs.pop("db")
        conn = pymysql.connect(**kwargs, connect_timeout=3, autocommit=True)
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    query("CREATE TABLE t (x INT)")
    query("INSERT INTO t VALUES (42)")
    await stack_control.stop("mysql", kill=True)
    with pytest.raises(pymysql.OperationalError):
        query("SELECT 1")
    await stack_control.start("mysql")
    assert query("SELECT x FROM t") == ((42,),)


@pytest.mark.kafka
async def test_kafka_killed_and_restarted_keeps_messages(
    kafka_bootstrap: str, kafka_topic: str, stack_control: Any
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(kafka_topic, b"before", key=b"k")
    finally:
        await producer.stop()

    await stack_control.stop("kafka", kill=True)
    await stack_control.start("kafka")

    consumer = AIOKafkaConsumer(
        kafka_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"k", b"before")
