"""The sink's spool (``tradepipe.sink.spool``) on its own: what it keeps, what it refuses, and
that a process killed in the middle of its writes leaves it consistent (SIGKILL of a real
writer process, repeated over seeds: every transaction reported done survives whole, no
transaction survives in part)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from tests.sink.spool_writer import TOPIC, line

from tradepipe.sink.checkpoint import Checkpoint
from tradepipe.sink.spool import SPOOL_FILE, Entry, Spool, SpoolError, SpoolFile

WRITER = Path(__file__).with_name("spool_writer.py")


def entries(first: int, n: int) -> list[Entry]:
    return [
        Entry(o, "BTCUSDT" if o % 3 else None, 1_000 + o, line(o)) for o in range(first, first + n)
    ]


def test_append_read_commit_trim_and_reopen(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / SPOOL_FILE)
    assert spool.append("t", 0, entries(0, 10)) == 10
    assert spool.append("t", 1, entries(5, 3)) == 3
    assert [e.offset for e in spool.read("t", 0, 4, 3)] == [4, 5, 6]
    got = spool.read("t", 1, 0, 100)
    assert got == entries(5, 3)  # symbol, time and bytes as given; None for a malformed one
    held = (("BTCUSDT", 60_000, 7),)
    checkpoint = Checkpoint(7, 10, 123_456, held, ("BTCUSDT", 60_000), None)
    assert spool.commit("t", 0, checkpoint) == 7
    assert [e.offset for e in spool.read("t", 0, 0, 100)] == [7, 8, 9]
    assert spool.count() == 6
    spool.close()

    again = SpoolFile(tmp_path / SPOOL_FILE)
    states = {(s.topic, s.partition): s for s in again.partitions()}
    assert states["t", 0].next_offset == 10 and states["t", 0].checkpoint == checkpoint
    assert states["t", 1].next_offset == 8 and states["t", 1].checkpoint is None
    assert again.summary() == [
        {"topic": "t", "partition": 0, "records": 3, "offsets": "7-9", "resume_offset": 7},
        {"topic": "t", "partition": 1, "records": 3, "offsets": "5-7", "resume_offset": 5},
    ]
    again.close()


def test_a_redelivered_record_is_refused_by_its_offset(tmp_path: Path) -> None:
    """A crash between the spool's commit and Kafka's: the records come again."""
    spool = SpoolFile(tmp_path / SPOOL_FILE)
    assert spool.append("t", 0, entries(0, 10)) == 10
    assert spool.append("t", 0, entries(5, 10)) == 5  # 5..9 again, 10..14 new
    assert spool.commit("t", 0, Checkpoint(15, 15, 0, ())) == 15
    assert spool.append("t", 0, entries(0, 15)) == 0  # trimmed ones too
    assert spool.read("t", 0, 0, 100) == [] and spool.count() == 0
    assert spool.append("t", 0, entries(20, 2)) == 2  # a gap (transaction markers) is fine
    assert spool.state("t", 0) is not None and spool.state("t", 0).next_offset == 22  # type: ignore[union-attr]


def test_adopt_only_starts_a_partition_it_does_not_know(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / SPOOL_FILE)
    old = Checkpoint(40, 52, 9, (("ETHUSDT", 120_000, 45),), None, None)
    assert spool.adopt("t", 0, old)
    state = spool.state("t", 0)
    assert state is not None and (state.next_offset, state.checkpoint) == (40, old)
    assert spool.append("t", 0, entries(30, 20)) == 10  # from the adopted offset on
    assert not spool.adopt("t", 0, Checkpoint(0, 0, 0, ()))


def test_files_that_are_not_a_spool_are_refused_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / SPOOL_FILE
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolError, match="not a usable spool"):
        SpoolFile(path)
    newer = tmp_path / "newer" / SPOOL_FILE
    newer.parent.mkdir()
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(SpoolError, match="newer"):
        SpoolFile(newer)


def test_durability_settings_are_wal_and_full(tmp_path: Path) -> None:
    spool = SpoolFile(tmp_path / SPOOL_FILE)
    assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


async def test_the_async_spool_keeps_its_figures(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path)
    assert spool.usage.records == 0 and spool.usage.oldest_ms is None
    await spool.append("t", 0, entries(0, 2_000))
    empty_ish = spool.usage.bytes
    assert spool.usage.records == 2_000 and spool.usage.oldest_ms is not None
    assert empty_ish > sum(len(e.line) for e in entries(0, 2_000))
    await spool.commit("t", 0, Checkpoint(2_000, 2_000, 0, ()))
    assert spool.usage.records == 0 and spool.usage.oldest_ms is None
    assert spool.usage.bytes < empty_ish / 4  # trimmed pages are free again
    await spool.close()
    again = await Spool.open(tmp_path)
    assert again.usage.records == 0
    await again.close()


def boundaries(seed: int, batches: int) -> tuple[list[int], dict[int, int]]:
    """The writer's plan: the next offset after each batch, the trim after some."""
    rng = random.Random(seed)
    ends, trims, next_offset, trimmed = [], {}, 0, 0
    for i in range(batches):
        next_offset += rng.randint(1, 3_000)
        ends.append(next_offset)
        if i % 4 == 3:
            trimmed = max(trimmed, rng.randint(max(0, next_offset - 4_000), next_offset))
            trims[i] = trimmed
    return ends, trims


@pytest.mark.parametrize("seed", range(12))
async def test_sigkill_during_writes_leaves_every_reported_transaction_and_no_partial_one(
    tmp_path: Path, seed: int
) -> None:
    kill_after = random.Random(seed * 7919).randint(3, 25)  # transactions reported
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), str(tmp_path), str(seed),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    reported: list[str] = []
    while len(reported) < kill_after:
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert raw, (await proc.stderr.read()).decode() if proc.stderr else "writer ended"
        reported.append(raw.decode().strip())
    proc.send_signal(signal.SIGKILL)  # somewhere in the next transaction(s)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    appended = [int(r.split()[2]) for r in reported if r.startswith("appended")]
    trimmed = [int(r.split()[2]) for r in reported if r.startswith("trimmed")]
    ends, trims = boundaries(seed, len(appended) + 3)
    spool = SpoolFile(tmp_path / SPOOL_FILE)
    state = spool.state(TOPIC, 0)
    assert state is not None
    # every append reported is there; at most the ones after it too, each whole
    assert state.next_offset >= appended[-1] and state.next_offset in ends
    floor = state.checkpoint.offset if state.checkpoint is not None else 0
    assert floor >= (trimmed[-1] if trimmed else 0) and (floor == 0 or floor in trims.values())
    got = spool.read(TOPIC, 0, 0, 10**7)
    assert [e.offset for e in got] == list(range(floor, state.next_offset))
    assert all(e.line == line(e.offset) for e in got)
    assert all((e.symbol is None) == (e.offset % 5 == 0) for e in got)
    assert spool.count() == len(got)
    # and it goes on: the spool is writable after the crash
    assert spool.append(TOPIC, 0, [Entry(state.next_offset, "X", 0, b"{}")]) == 1
    spool.close()


async def test_a_second_sink_on_the_same_spool_is_refused_with_the_holders_pid(
    tmp_path: Path,
) -> None:
    """Two processes on one spool would cut, put and trim each other's records: the second
    open fails with the directory and the first one's pid; the lock goes with the first
    process (SIGKILL included: the kernel releases it), and the spool then opens."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys, time; from tradepipe.sink.spool import SpoolFile; "
        "SpoolFile(sys.argv[1]); print('open', flush=True); time.sleep(120)",
        str(tmp_path / SPOOL_FILE), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    try:
        assert (await asyncio.wait_for(holder.stdout.readline(), 60)).strip() == b"open"
        with pytest.raises(SpoolError, match=rf"in use by another sink \(pid {holder.pid}\)"):
            SpoolFile(tmp_path / SPOOL_FILE)
        with pytest.raises(SpoolError, match=r"sink\.spool_dir of its own"):
            await Spool.open(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    spool = SpoolFile(tmp_path / SPOOL_FILE)  # released with the process
    with pytest.raises(SpoolError, match=rf"pid {os.getpid()}"):
        SpoolFile(tmp_path / SPOOL_FILE)  # one process, two opens: refused too
    spool.close()
    SpoolFile(tmp_path / SPOOL_FILE).close()  # and released by close()
