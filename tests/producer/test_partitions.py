"""``kafka.partitions`` against a real broker: the producer creates the topic with that many
partitions; an existing topic with fewer is refused (error log naming both counts, the
``produce`` command exits 2, and so does ``run`` with real Kafka); one with more is used as it
is."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from structlog.testing import capture_logs

from tradepipe.config import KafkaSettings
from tradepipe.producer import KafkaOutput, TopicMismatch, ensure_topic


async def partition_count(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described["error_code"] == 0, described
    return len(described["partitions"])


async def test_the_topic_is_created_with_kafka_partitions(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=fresh_topic, partitions=4)
    output = KafkaOutput(settings)
    with capture_logs() as logs:
        await output.start()
    await output.stop()
    assert await partition_count(kafka_bootstrap, fresh_topic) == 4
    created = [e for e in logs if e["event"] == "topic_created"]
    assert created and created[0]["partitions"] == 4
    # started again on the topic it made: "already exists" is no error, the 4 are used
    with capture_logs() as logs:
        await output.start()
    await output.stop()
    started = [e for e in logs if e["event"] == "kafka_producer_started"]
    assert started[0]["partitions"] == 4


async def test_an_existing_topic_with_fewer_partitions_is_refused(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    await ensure_topic(KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=fresh_topic))
    assert await partition_count(kafka_bootstrap, fresh_topic) == 1
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=fresh_topic, partitions=3)
    with capture_logs() as logs, pytest.raises(TopicMismatch, match=r"has 1 partition\(s\)"):
        await KafkaOutput(settings).start()
    errors = [e for e in logs if e["event"] == "topic_has_fewer_partitions"]
    assert errors and errors[0]["log_level"] == "error"
    assert (errors[0]["partitions"], errors[0]["configured_partitions"]) == (1, 3)
    assert "--partitions 3" in errors[0]["fix"]
    # the topic is left as it was: nothing alters an operator's topic behind their back
    assert await partition_count(kafka_bootstrap, fresh_topic) == 1
    # more partitions than asked for: used as they are
    fewer = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=fresh_topic, partitions=1)
    output = KafkaOutput(fewer)
    await output.start()
    await output.stop()


@pytest.mark.parametrize("command", ["produce", "run"])
async def test_the_command_exits_2_on_a_topic_with_fewer_partitions(
    kafka_bootstrap: str, fresh_topic: str, tmp_path: object, command: str
) -> None:
    await ensure_topic(KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=fresh_topic))
    env = {
        **os.environ,
        "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TRADEPIPE_KAFKA_TOPIC": fresh_topic,
        "TRADEPIPE_KAFKA_PARTITIONS": "2",
        # no exchange here: the feed only retries; the topic check ends the process first
        "TRADEPIPE_FEED_WS_URL": "ws://127.0.0.1:9",
        "TRADEPIPE_FEED_REST_URL": "http://127.0.0.1:9",
        "TRADEPIPE_FEED_STATE_PATH": f"{tmp_path}/state.json",
        "TRADEPIPE_FEED_QUARANTINE_PATH": f"{tmp_path}/quarantine.ndjson",
        "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
    }
    args: list[str] = []
    if command == "run":  # the whole local pipeline on real Kafka, with its own folders
        args = ["--kafka", kafka_bootstrap, "--db", f"sqlite:///{tmp_path}/db.sqlite",
                "--no-dashboard"]  # fmt: skip
        env.update(TRADEPIPE_SINK_OBJECTS_DIR=f"{tmp_path}/objects",
                   TRADEPIPE_SINK_SPOOL_DIR=f"{tmp_path}/spool")  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradepipe.cli", command, *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2, (out[-2000:], err[-2000:])
    assert b"has 1 partition(s), kafka.partitions asks for 2" in err
    assert b"topic_has_fewer_partitions" in out
