"""``tradepipe replay`` -> ``tradepipe run``, end to end, against the offline oracle.

The rows ``run`` stores in SQLite must equal, column for column, what ``tradepipe aggregate``
prints for the same trades; the objects it writes must follow the S3 layout and hold every
trade once; rows of a closed minute must show within 3 s of its close; a stop flushes all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from tests.local.helpers import SAMPLES, aggregate_csv, db_texts, trade_count, tradepipe

from tradepipe.config import RUN_DEFAULTS, Settings
from tradepipe.core import MINUTE_MS, Layout, Trade, iter_trades, minute_of, parse_key, to_event
from tradepipe.local.pipeline import Plan, Running, serve


def run_env(tmp_path: Path) -> dict[str, str]:
    """Everything `run` writes goes under tmp_path; every port is a free one."""
    return {
        "TRADEPIPE_SINK_OBJECTS_DIR": str(tmp_path / "objects"),
        "TRADEPIPE_SINK_SPOOL_DIR": str(tmp_path / "spool"),
        "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
        "TRADEPIPE_FEED_QUARANTINE_PATH": str(tmp_path / "quarantine.ndjson"),
        "TRADEPIPE_FEED_STATE_PATH": str(tmp_path / "producer-state.json"),
    }


def objects_under(root: Path) -> dict[str, list[Trade]]:
    out: dict[str, list[Trade]] = {}
    for path in sorted(root.rglob("*.ndjson.gz")):
        key = path.relative_to(root).as_posix()
        items = list(iter_trades(gzip.decompress(path.read_bytes()), key))
        assert all(isinstance(t, Trade) for t in items), key
        out[key] = [t for t in items if isinstance(t, Trade)]
    return out


@pytest.mark.parametrize("layout", list(Layout))
async def test_replay_then_run_equals_aggregate(tmp_path: Path, layout: Layout) -> None:
    assert len(SAMPLES) == 2, f"the shipped samples are missing: {SAMPLES}"
    expected = await aggregate_csv(SAMPLES)
    total = sum(int(r[2]) + int(r[3]) for r in expected)
    db = tmp_path / "tradepipe.db"
    async with tradepipe("replay", *map(str, SAMPLES), "--port", "0", "--speed", "0") as replay:
        line = await replay.wait_line("listening ws://")
        ws = line.split()[1]
        env = {
            **run_env(tmp_path),
            "TRADEPIPE_VERIFY_INTERVAL_SECONDS": "0.5",
            "TRADEPIPE_SINK_LAYOUT": layout.value,
        }
        async with tradepipe(
            "run", "--source", ws, "--symbols", "btcusdt,ethusdt", "--db", f"sqlite:///{db}",
            "--dashboard-listen", "127.0.0.1:0", env=env,
        ) as run:  # fmt: skip
            await run.wait_line("dashboard: http://127.0.0.1:")
            await replay.wait_line("replay finished", seconds=120)
            got = 0
            for _ in range(900):  # up to 180 s on a loaded machine
                if (got := trade_count(db)) >= total:
                    break
                await asyncio.sleep(0.2)
            assert got == total
            # the background verify proves every minute but each symbol's newest two (still
            # open by its rule) against the emulator's klines
            provable = {(r[0], r[1]) for r in expected} - newest_two(expected)
            checks: dict[tuple[str, str], str] = {}
            for _ in range(600):  # up to 120 s on a loaded machine
                checks = minute_checks(db)
                if provable <= checks.keys():
                    break
                await asyncio.sleep(0.2)
            assert {k: checks.get(k) for k in provable} == dict.fromkeys(provable, "exact")
            assert await run.stop() == 0, "\n".join(run.lines[-20:])
        await replay.stop()
    # every column of every row, exactly as the offline aggregation prints it
    assert db_texts(db) == expected
    # the objects: the S3 layout asked for, each in the folder of its trades' minute (and
    # symbol, per symbol), each trade once; per minute, one object holds both symbols
    objects = objects_under(tmp_path / "objects")
    assert objects
    seen: set[tuple[str, int]] = set()
    for key, trades in objects.items():
        parsed = parse_key(key)
        assert parsed.prefix == "trades" and parsed.layout is layout
        for t in trades:
            assert parsed.admits(t.symbol, minute_of(t.time_ms)), key
            assert (t.symbol, t.agg_id) not in seen
            seen.add((t.symbol, t.agg_id))
    assert len(seen) == total
    # a clean stop says so
    assert any('"msg": "stopped"' in line for line in run.lines)


def newest_two(rows: list[tuple[str, ...]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for symbol in {r[0] for r in rows}:
        out |= set(sorted((r[0], r[1]) for r in rows if r[0] == symbol)[-2:])
    return out


def minute_checks(path: Path) -> dict[tuple[str, str], str]:
    """``minute_checks`` of the SQLite file: (symbol, minute) -> status."""
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as c:
        try:
            rows = c.execute('SELECT symbol, "timestamp", status FROM minute_checks').fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return {}
    return {(r[0], r[1]): r[2] for r in rows}


def write_live_trades(path: Path, seconds: float, symbol: str = "BTCUSDT") -> int:
    """About 20 trades a second for ``seconds``, both sides, contiguous ids (seeded)."""
    rng = random.Random(5)
    t0 = 1_732_406_400_000
    lines = []
    price = 9_700_000
    for i in range(int(seconds * 20)):
        price += rng.choice((-20, -10, 0, 10, 20))
        q = rng.randint(1, 50_000_000)
        trade = Trade(
            symbol=symbol, agg_id=5_000_000 + i,
            price=Decimal(price) / 100, quantity=Decimal(q) / 100_000_000,
            first_id=9_000_000 + 2 * i, last_id=9_000_000 + 2 * i + 1,
            time_ms=t0 + i * 50, buyer_is_maker=rng.random() < 0.5,
        )  # fmt: skip
        lines.append(msgspec.json.encode(to_event(trade)))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


@pytest.mark.timeout(200)
async def test_rows_within_3_seconds_of_the_minute_close(tmp_path: Path) -> None:
    """Live-like: the replay serves trade times = the wall clock (speed 1, rebased). The row of
    the first minute that closes must be in SQLite within 3 s of the minute's end; the minute
    still open when we stop is flushed by the stop."""
    # data until 15 s past the next wall-clock minute boundary, then the replay ends
    span = 60 - time.time() % 60 + 15
    data, record = tmp_path / "live.ndjson", tmp_path / "published.ndjson"
    write_live_trades(data, span)
    db = tmp_path / "t.db"
    async with tradepipe(
        "replay", str(data), "--port", "0", "--speed", "1", "--rebase-time", "--record", str(record)
    ) as replay:
        ws = (await replay.wait_line("listening ws://")).split()[1]
        settings = Settings.load(None, {
            **run_env(tmp_path), "TRADEPIPE_DB_URL": f"sqlite:///{db}",
            "TRADEPIPE_FEED_WS_URL": ws, "TRADEPIPE_FEED_REST_URL": ws.replace("ws://", "http://"),
        }, defaults=RUN_DEFAULTS)  # fmt: skip
        assert (settings.sink.grace_seconds, settings.sink.objects) == (1.0, "folder")
        stop = asyncio.Event()
        ready: list[Running] = []
        pipeline = asyncio.create_task(serve(settings, stop, Plan(dashboard=False), ready.append))
        # watch the table: when does each minute's row first appear?
        appeared: dict[str, float] = {}
        while not replay_finished(replay.lines):
            for (ts,) in rows_timestamps(db):
                appeared.setdefault(ts, time.time())
            await asyncio.sleep(0.05)
            assert not pipeline.done(), pipeline
        assert ready and ready[0].broker is not None
        await asyncio.sleep(0.5)  # the last trades reach the broker
        stop.set()
        assert await pipeline == 0
        await replay.stop()
    assert appeared, "no row appeared while the replay ran"
    closed = min(appeared)
    minute_end = minute_ms_of(closed) + MINUTE_MS
    delay = appeared[closed] - minute_end / 1000
    print(f"row of minute {closed} in SQLite {delay:.2f} s after the minute closed")
    assert delay <= 3.0, f"row of {closed} appeared {delay:.2f} s after the minute closed"
    # the stop flushed the minute that was still open: the DB holds everything published
    assert db_texts(db) == await aggregate_csv([record])
    assert len(db_texts(db)) == len(appeared) + 1


def replay_finished(lines: list[str]) -> bool:
    return any("replay finished" in line for line in lines)


def rows_timestamps(db: Path) -> list[tuple[str]]:
    import sqlite3

    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
            return conn.execute('SELECT "timestamp" FROM trade_minutes').fetchall()
    except sqlite3.OperationalError:
        return []


def minute_ms_of(text: str) -> int:
    from tradepipe.core.rows import minute_ms_of_text

    return minute_ms_of_text(text)


async def test_run_rejects_unusable_arguments_with_exit_2(tmp_path: Path) -> None:
    for args, message in [
        (["--source", "http://127.0.0.1:9443"], "expected ws://HOST:PORT"),
        (["--db", "postgres://h/db"], "db.url"),
        (["--symbols", "btc-usdt"], "feed.symbols"),
        (["--dashboard-listen", "8050"], "dashboard.listen"),
    ]:
        async with tradepipe("run", *args, env=run_env(tmp_path)) as p:
            assert await p.exited(30) == 2, p.lines
        assert any(message in line for line in p.lines), (args, p.lines)
        assert not any("Traceback" in line for line in p.lines), p.lines
