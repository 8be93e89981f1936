"""The resume state file: atomic writes that survive SIGKILL, a clear error for a file that is
not ours (never a crash loop), and where the file lives (``$STATE_DIRECTORY`` or
``feed.state_path``)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradepipe.config import ConfigError, Settings
from tradepipe.producer import Record
from tradepipe.producer.state import StateError, StateFile, load_state
from tradepipe.replay import Tape

from .conftest import StartEmulator
from .test_restart import ProducerProcess, producer_env


def rec(symbol: str, agg_id: int) -> Record:
    return Record(symbol, agg_id, 1_700_000_000_000, b"{}")


def test_note_and_flush_write_the_highest_acknowledged_id(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    state = StateFile(path, "aggtrades", ["btcusdt", "ethusdt"], {"BTCUSDT": 5, "DOTUSDT": 9})
    assert state.last_acked == {"BTCUSDT": 5}, "symbols no longer subscribed are dropped"
    state.note([rec("BTCUSDT", 7), rec("ETHUSDT", 3), rec("BTCUSDT", 6)])
    assert state.flush()
    assert load_state(path, "aggtrades") == {"BTCUSDT": 7, "ETHUSDT": 3}
    writes = state.writes
    assert state.flush() and state.writes == writes, "nothing changed: no write"
    assert list(path.parent.iterdir()) == [path], "no temporary file left behind"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01garbage", "not JSON"),
        (b'{"hello": 1}', "not a tradepipe-producer-state file"),
        (
            b'{"format": "tradepipe-producer-state", "version": 2, "topic": "aggtrades"}',
            "version 2",
        ),
        (
            b'{"format": "tradepipe-producer-state", "version": 1, "topic": "other",'
            b' "last_acked": {}}',
            "written for topic 'other'",
        ),
        (
            b'{"format": "tradepipe-producer-state", "version": 1, "topic": "aggtrades",'
            b' "last_acked": {"BTCUSDT": 1180591620717411303424}}',
            "is not an aggregate id",
        ),
        (
            b'{"format": "tradepipe-producer-state", "version": 1, "topic": "aggtrades",'
            b' "last_acked": {"BTCUSDT": -1}}',
            "is not an aggregate id",
        ),
        (
            b'{"format": "tradepipe-producer-state", "version": 1, "topic": "aggtrades",'
            b' "last_acked": {"btc/usdt": 1}}',
            "is not a symbol",
        ),
    ],
)
def test_a_file_that_is_not_ours_is_an_error_naming_it(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "producer-state.json"
    path.write_bytes(content)
    with pytest.raises(StateError) as err:
        load_state(path, "aggtrades")
    assert str(path) in str(err.value) and message in str(err.value)


def test_no_file_yet_is_a_first_start(tmp_path: Path) -> None:
    assert load_state(tmp_path / "absent.json", "aggtrades") == {}


WRITER = """
import sys
from tradepipe.producer import Record
from pathlib import Path
from tradepipe.producer.state import StateFile, load_state
before = load_state(Path(sys.argv[1]), "aggtrades")  # where the killed one left off
state = StateFile(sys.argv[1], "aggtrades", ["btcusdt"], before)
i = before.get("BTCUSDT", 0)
while True:
    i += 1
    state.note([Record("BTCUSDT", i, 0, b"{}")])
    state.flush()
    if i == before.get("BTCUSDT", 0) + 1:
        print("writing", flush=True)
"""


def test_atomic_write_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    """A process rewriting the file as fast as it can is killed 25 times at seeded random
    moments: the file is always whole and its id never goes back."""
    path = tmp_path / "producer-state.json"
    rng = random.Random(4)
    last = 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -9
        got = load_state(path, "aggtrades")["BTCUSDT"]
        assert got >= max(last, 1)
        last = got
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    # at most the temporary file of the last kill (each start removes older ones)
    assert len(leftovers) <= 1 and all(n.endswith(".tmp") for n in leftovers), leftovers
    assert last > 25, "the writer should have written many times"


async def test_corrupt_state_file_is_set_aside_and_the_producer_runs(
    real_tape: Tape,
    start_emulator: StartEmulator,
    kafka_bootstrap: str,
    fresh_topic: str,
    tmp_path: Path,
) -> None:
    """A real ``tradepipe produce`` with a garbage state file: an error naming the file, the
    file moved aside, the producer ready and writing a good state file; SIGTERM exits 0."""
    state_path = tmp_path / "state" / "producer-state.json"
    state_path.parent.mkdir()
    state_path.write_bytes(b"{not json at all")
    async with start_emulator(real_tape, speed=3.0) as emu:
        env = producer_env(emu, kafka_bootstrap, fresh_topic, tmp_path)
        producer = ProducerProcess(env, tmp_path / "producer.log")
        await producer.start()
        await producer.wait_event("ready")
        deadline = time.monotonic() + 20
        while not (state_path.exists() and load_state(state_path, fresh_topic)):
            assert time.monotonic() < deadline, producer.tail()
            await asyncio.sleep(0.2)
        code = await producer.stop(signal.SIGTERM)
    assert code == 0, producer.tail()
    unusable = producer.events("state_file_unusable", current=False)
    assert len(unusable) == 1
    assert str(state_path) in unusable[0]["error"] and "not JSON" in unusable[0]["error"]
    assert unusable[0]["level"] == "error"
    _check_files(Path(unusable[0]["moved_to"]), state_path)


def _check_files(aside: Path, state_path: Path) -> None:
    assert aside.read_bytes() == b"{not json at all", "kept for the operator"
    saved = json.loads(state_path.read_bytes())
    assert set(saved["last_acked"]) == {"BTCUSDT", "ETHUSDT"}


def test_state_directory_decides_where_the_file_lives() -> None:
    default = Settings.load(None, {})
    assert default.feed.state_path == "./data/producer-state.json"
    systemd = Settings.load(None, {"STATE_DIRECTORY": "/var/lib/tradepipe:/var/lib/other"})
    assert systemd.feed.state_path == "/var/lib/tradepipe/producer-state.json"
    explicit = Settings.load(
        None, {"STATE_DIRECTORY": "/var/lib/tradepipe", "TRADEPIPE_FEED_STATE_PATH": "/x/s.json"}
    )
    assert explicit.feed.state_path == "/x/s.json"
    with pytest.raises(ConfigError, match="STATE_DIRECTORY"):
        Settings.load(None, {"STATE_DIRECTORY": "relative/dir"})


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"TRADEPIPE_FEED_MAX_RESUME_TRADES": "0"}, "feed.max_resume_trades"),
        ({"TRADEPIPE_FEED_MAX_RESUME_TRADES": "many"}, "feed.max_resume_trades"),
        ({"TRADEPIPE_FEED_RESUME_TIMEOUT_SECONDS": "-1"}, "feed.resume_timeout_seconds"),
        ({"TRADEPIPE_FEED_STATE_PATH": " "}, "feed.state_path"),
    ],
)
def test_resume_keys_are_validated(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Settings.load(None, env)
