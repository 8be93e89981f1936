"""The in-process broker: offsets, back-pressure, trimming on commit, clean close."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tradepipe.local.broker import LocalBroker, LocalConsumer
from tradepipe.producer import OutputUnavailable, Record


def records(first: int, n: int) -> list[Record]:
    return [
        Record("BTCUSDT", a, 1_700_000_000_000 + a, b'{"a":%d}' % a)
        for a in range(first, first + n)
    ]


async def test_offsets_in_publish_order_and_consumer_reads_from_its_position() -> None:
    broker = LocalBroker("t", max_messages=100)
    assert broker  # an empty broker is still truthy: `options.output or Kafka` must pick it
    await broker.start()
    await broker.publish(records(0, 3))
    await broker.publish(records(3, 2))
    consumer = LocalConsumer(broker, max_records=4)
    got = await consumer.getmany(timeout_ms=10)
    msgs = got[broker.tp]
    assert [m.offset for m in msgs] == [0, 1, 2, 3]
    assert [m.value for m in msgs] == [r.value for r in records(0, 4)]
    assert msgs[0].key == b"BTCUSDT" and msgs[0].timestamp == 1_700_000_000_000
    assert [m.offset for m in (await consumer.getmany(timeout_ms=10))[broker.tp]] == [4]
    assert await consumer.getmany(timeout_ms=10) == {}  # nothing new within the wait
    assert consumer.highwater(broker.tp) == 5 == await consumer.position(broker.tp)


async def test_bounded_publish_waits_for_commits() -> None:
    broker = LocalBroker("t", max_messages=4)
    consumer = LocalConsumer(broker)
    await broker.publish(records(0, 3))
    blocked = asyncio.create_task(broker.publish(records(3, 2)))
    await asyncio.sleep(0.05)
    assert not blocked.done() and broker.end_offset == 3
    await consumer.getmany()
    await consumer.commit({broker.tp: OffsetAndMetadata(2, "cp")})  # 0 and 1 written: trimmed
    await asyncio.wait_for(blocked, 1)
    assert (broker.start_offset, broker.end_offset, broker.held) == (2, 5, 3)
    assert broker.committed == (2, "cp")
    with pytest.raises(ValueError, match="outside"):
        await broker.commit(9, "")
    # a batch larger than the bound still gets in once the log is empty
    await broker.commit(5, "")
    await asyncio.wait_for(broker.publish(records(5, 10)), 1)
    assert broker.end_offset == 15


async def test_close_lets_the_consumer_drain_then_refuses_publishing() -> None:
    broker = LocalBroker("t", max_messages=10)
    consumer = LocalConsumer(broker)
    await broker.publish(records(0, 2))
    waiting = asyncio.create_task(broker.publish(records(2, 20)))  # bigger than the room left
    await asyncio.sleep(0.01)
    await broker.close()
    with pytest.raises(OutputUnavailable):
        await waiting
    with pytest.raises(OutputUnavailable):
        await broker.start()
    assert not consumer.drained
    assert len((await consumer.getmany(timeout_ms=1000))[broker.tp]) == 2
    assert consumer.drained
    assert await consumer.getmany(timeout_ms=1000) == {}  # at once, not after the timeout


async def test_the_consumer_owns_the_one_partition_and_seeks_within_the_log() -> None:
    """``assignment``/``seek``: the sink re-reads records fetched before a partition had its
    batcher (a Kafka rebalance race); on the in-process broker the same calls work."""
    broker = LocalBroker("t", max_messages=100)
    consumer = LocalConsumer(broker)
    assert consumer.assignment() == {broker.tp}
    await broker.publish(records(0, 5))
    assert [m.offset for m in (await consumer.getmany(timeout_ms=10))[broker.tp]] == [0, 1, 2, 3, 4]
    consumer.seek(broker.tp, 3)
    assert await consumer.position(broker.tp) == 3
    assert [m.offset for m in (await consumer.getmany(timeout_ms=10))[broker.tp]] == [3, 4]
    await consumer.commit({broker.tp: OffsetAndMetadata(2, "")})  # 0 and 1 trimmed
    with pytest.raises(ValueError, match="outside"):
        consumer.seek(broker.tp, 1)
    with pytest.raises(ValueError, match="outside"):
        consumer.seek(broker.tp, 6)
    other = TopicPartition("t", 1)
    with pytest.raises(ValueError, match="not the local broker's partition"):
        consumer.seek(other, 2)
    with pytest.raises(ValueError, match="not the local broker's partition"):
        await consumer.commit({other: OffsetAndMetadata(2, "")})
    assert broker.committed == (2, "")


async def test_rebase_numbers_the_log_after_an_earlier_runs_spool_and_pause_stops_fetches() -> None:
    """The sink's spool holds offsets of an earlier run: a new broker numbers its messages
    after them (held ones renumbered), before anything is read or committed."""
    broker = LocalBroker("t", max_messages=100)
    await broker.publish(records(0, 3))
    consumer = LocalConsumer(broker)
    broker.rebase(500)
    consumer.rebased()
    await broker.publish(records(3, 2))
    assert (broker.start_offset, broker.end_offset) == (500, 505)
    consumer.pause(broker.tp)
    assert await consumer.getmany(timeout_ms=10) == {}  # paused: nothing, even with messages
    consumer.resume(broker.tp)
    msgs = (await consumer.getmany(timeout_ms=10))[broker.tp]
    assert [m.offset for m in msgs] == [500, 501, 502, 503, 504]
    assert [m.value for m in msgs] == [r.value for r in records(0, 5)]
    await consumer.commit({broker.tp: OffsetAndMetadata(505, "spool")})
    assert broker.held == 0
    with pytest.raises(ValueError, match="after a commit"):
        broker.rebase(900)
