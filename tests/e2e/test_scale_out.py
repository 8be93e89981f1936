"""Several sinks, end to end: emulator -> produce (a topic of 4 partitions, created by the
producer) -> Kafka -> two ``tradepipe sink`` in one consumer group, per-minute objects -> S3 ->
notification -> Lambda handler -> MariaDB, judged against the independent tally. (The clean
run, tests/e2e/test_pipeline.py, checks the per-minute objects of 4 partitions.)

With 4 partitions the producer's murmur2 puts BTCUSDT and DOTUSDT in partition 2 and ETHUSDT in
partition 1, so per-minute objects of partition 2 hold two symbols, and two sinks of one group
(aiokafka's round-robin assignment: partitions 0 and 2, 1 and 3) each own trades.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from .conftest import StartPipeline
from .layouts import PARTITIONS, PER_MINUTE, assert_once_each
from .processes import Service

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.mysql, pytest.mark.s3]


@pytest.mark.parametrize("seed", [1, 2])
async def test_two_sinks_one_killed_again_and_again_keep_every_trade_once(
    start_pipeline: StartPipeline, seed: int
) -> None:
    """Two sinks divide the partitions; one of them (chosen by the seed) is SIGKILLed at random
    moments while trades flow and restarted by its supervisor; every kill makes the group
    rebalance twice (the dead member times out, the new one joins), so partitions move between
    the sinks with objects open and flushes written but not committed. No trade may go missing
    from S3 or the rows: the new owner starts at the offset committed once the records were in
    the old owner's spool, and the old owner puts what it spooled. A kill between the spool's
    commit and Kafka's puts the trades of that window in two objects (both sinks read them):
    allowed in S3 -- two keys, since a name carries its first and last offsets, so a later put
    never replaces different records under one key (with first offsets alone it did, and
    trades went missing) -- and counted once in the rows, which must equal the tally."""
    rng = random.Random(seed)
    # small objects: many puts and commits, so kills land between a put and its commit too
    plan = {"speed": 3, "max_object_trades": 40, "producer_env": PARTITIONS, "sink_env": PER_MINUTE}
    async with start_pipeline(**plan) as p:
        env = p.sink_environment(spool="spool-b")  # a spool of its own, as on another host
        other = Service("sink-b", ["sink"], env, p.dir / "sink-b.log")
        await other.start()
        try:
            await other.wait_for("sink_started", 60)
            await other.wait_for("partition_assigned", 60)  # the group has divided the topic
            sinks = [p.sink, other]
            flowing = []  # was the market still trading at each kill?
            for _ in range(3):
                await asyncio.sleep(rng.uniform(0.5, 3.0))
                victim = rng.choice(sinks)
                runs = len(victim.runs)
                flowing.append(not (await p.emulator())["finished"])
                victim.kill()
                await victim.wait_restarted(runs)  # systemd's Restart=on-failure
                await victim.wait_for("sink_started", 60)
            await p.settle(seconds=180)
            await p.assert_exact()
            objects = await p.objects()
            owners = {s.name: len(s.events("flushed")) for s in sinks}
        finally:
            assert await other.stop(30) == 0, other.tail()
    assert flowing[0], "the first kill should land while trades are flowing"
    assert_once_each(objects, p, repeats=True)
    # both sinks wrote objects; every exit but the last of each was a SIGKILL
    assert all(n > 0 for n in owners.values()), owners
    exits = [r.exit_code for s in sinks for r in s.runs[:-1]]
    assert exits and all(code == -9 for code in exits), exits
    assert p.lam.stats.failures == 0
