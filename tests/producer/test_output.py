"""The publisher and the production Kafka output, against the real broker.

- ``kafka.linger_ms``: the publisher lets a young chunk wait until its oldest record is that
  old, gathering what arrives meanwhile -- fewer, larger Kafka requests at moderate rates --
  and never holds back a full chunk or records that have waited already. The output is the
  production :class:`KafkaOutput`, wrapped only to note each chunk as it goes.
- A start cancelled half-way (the service stopping while the broker does not answer) closes
  the aiokafka producer it opened."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence

from tradepipe.config import KafkaSettings
from tradepipe.producer import KafkaOutput, Outbox, ProducerMetrics, Record
from tradepipe.producer.publisher import Publisher

from .conftest import ids_by_symbol, read_topic
from .test_poison import value


class NotingOutput(KafkaOutput):
    """The real output; each chunk's size and its oldest record's age when it is published."""

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(settings)
        self.chunks: list[tuple[int, float, float]] = []  # (size, first received_at, age)

    async def publish(self, records: Sequence[Record]) -> None:
        first = records[0].received_at
        self.chunks.append((len(records), first, time.monotonic() - first))
        await super().publish(records)


def record(agg_id: int, received_at: float) -> Record:
    now = int(time.time() * 1000)
    return Record("BTCUSDT", agg_id, now, value(agg_id, now), received_at=received_at)


async def run_publisher(
    bootstrap: str,
    topic: str,
    linger: float,
    max_chunk: int,
    feed: Callable[[Outbox], Awaitable[None]],
) -> NotingOutput:
    output = NotingOutput(KafkaSettings(bootstrap_servers=bootstrap, topic=topic,
                                        request_timeout_ms=5000))  # fmt: skip
    outbox = Outbox(10_000)
    publisher = Publisher(output, outbox, ProducerMetrics(), max_chunk=max_chunk, linger=linger)
    task = asyncio.create_task(publisher.run())
    try:
        await publisher.started.wait()
        await feed(outbox)
        await outbox.wait_empty()
    finally:
        task.cancel()
        await output.stop()
    return output


async def test_a_trickle_is_gathered_into_requests_at_least_linger_apart(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    linger = 0.05

    async def trickle(outbox: Outbox) -> None:
        for i in range(1, 151):  # one record every 2 ms or so, for ~0.3 s and more
            outbox.extend([record(i, time.monotonic())])
            await asyncio.sleep(0.002)

    async with asyncio.timeout(60):
        out = await run_publisher(kafka_bootstrap, fresh_topic, linger, 5_000, trickle)
    assert sum(n for n, _, _ in out.chunks) == 150
    assert all(age >= linger for _, _, age in out.chunks), out.chunks
    firsts = [first for _, first, _ in out.chunks]
    # a chunk takes everything that arrived while it lingered: the next one starts later
    assert all(b - a >= linger for a, b in itertools.pairwise(firsts)), firsts
    assert len(out.chunks) < 150 / 5, "gathered several records a request"
    got = await read_topic(kafka_bootstrap, fresh_topic, 150, 20)
    assert ids_by_symbol(got) == {"BTCUSDT": list(range(1, 151))}, "in order, once"


async def test_a_full_chunk_and_records_that_waited_already_are_sent_at_once(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    linger = 30.0  # far longer than the test may take

    async def burst_then_old(outbox: Outbox) -> None:
        now = time.monotonic()
        outbox.extend(record(i, now) for i in range(1, 51))  # five full chunks of 10
        await outbox.wait_empty()
        outbox.extend(record(i, now - linger) for i in range(51, 56))  # waited long enough

    async with asyncio.timeout(20):
        out = await run_publisher(kafka_bootstrap, fresh_topic, linger, 10, burst_then_old)
    assert [n for n, _, _ in out.chunks] == [10, 10, 10, 10, 10, 5]
    got = await read_topic(kafka_bootstrap, fresh_topic, 55, 20)
    assert ids_by_symbol(got) == {"BTCUSDT": list(range(1, 56))}, "in order, once"


async def test_a_producer_stopped_while_it_starts_is_closed() -> None:
    """Cancelled inside ``AIOKafkaProducer.start()`` (a broker that accepts and never answers):
    the producer is stopped, not left for the garbage collector to warn about."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    output = KafkaOutput(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", topic="t",
                                       request_timeout_ms=30_000), create_topic=False)  # fmt: skip
    seen: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, ctx: seen.append(ctx))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            task = asyncio.create_task(output.start())
            await asyncio.sleep(0.5)  # connected, waiting for the bootstrap metadata
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            gc.collect()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
        server.close()
    unclosed = [w for w in caught if "Unclosed AIOKafkaProducer" in str(w.message)]
    assert not unclosed and not [c for c in seen if "Unclosed" in str(c.get("message"))]
    assert output._producer is None
