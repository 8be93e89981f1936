"""``tradepipe verify`` against the emulator's klines, on SQLite and MariaDB: what it flags, what
``--repair`` makes of it, and that a repair never counts a trade twice."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path

from tests.replay.helpers import StartEmulator
from tests.store.helpers import expected, real_trades, stored
from tests.verify.helpers import MINUTES, by_minute, load, sample_tape, verify

from tradepipe.core import minute_of, minute_text
from tradepipe.core.checks import Status
from tradepipe.replay import Tape, tape_of
from tradepipe.store import MinuteReads, connect, parse_db_url


def alter(url: str, minute_ms: int, column: str, value: str) -> None:
    conn = connect(parse_db_url(url))
    try:
        with conn.transaction():
            conn.execute_many(
                f"UPDATE trade_minutes SET {conn.quote(column)} = {conn.ph} "
                f"WHERE {conn.quote('timestamp')} = {conn.ph}",
                [(value, minute_text(minute_ms))],
            )
    finally:
        conn.close()


def dashboard_checks(url: str, first: int, last: int) -> list[tuple[str, str]]:
    reads = MinuteReads(parse_db_url(url))
    try:
        return reads.checks("BTCUSDT", minute_text(first), minute_text(last))
    finally:
        reads.close()


async def test_recorded_trades_verify_exact_against_their_klines(
    db_url: str, real_tape: Tape, start_emulator: StartEmulator
) -> None:
    """The recorded BTCUSDT and ETHUSDT trades, loaded, are proven minute by minute."""
    trades = real_trades() + real_trades("cryptofeed-BINANCE-ee25be.ethusdt.aggTrade.ndjson")
    load(db_url, trades)
    async with start_emulator(real_tape, speed=0, start_now=True) as emu:
        await emu.finished.wait()
        report = await verify(db_url, emu.rest_url, 1617566580000, 1617566640000, repair=False)
    assert report.counts() == {"exact": 4, "mismatch": 0, "missing": 0, "hole": 0}
    assert report.all_exact and sorted(report.symbols) == ["BTCUSDT", "ETHUSDT"]


async def test_verify_flags_exactly_the_damaged_minutes_and_repair_restores_them(
    db_url: str, start_emulator: StartEmulator
) -> None:
    tape = sample_tape()
    minutes = by_minute(tape.trades)
    m = sorted(minutes)
    assert len(m) == MINUTES
    inside = minutes[m[2]][100:105]  # a hole inside a minute
    across = minutes[m[5]][-3:] + minutes[m[6]][:4]  # a hole across a minute boundary
    whole = minutes[m[8]]  # a whole minute missing
    removed = {t.agg_id for t in inside + across + whole}
    load(db_url, [t for t in tape.trades if t.agg_id not in removed])
    alter(db_url, m[10], "total_btc_b", "1.00000000")  # one row altered
    first, last = m[0], m[-1]
    async with start_emulator(tape, speed=0, start_now=True) as emu:
        await emu.finished.wait()
        report = await verify(db_url, emu.rest_url, first, last, repair=False)
        flagged = {c.minute_ms: c for c in report.checks if c.status is not Status.EXACT}
        assert {k: c.status for k, c in flagged.items()} == {
            m[2]: Status.HOLE,
            m[5]: Status.HOLE,
            m[6]: Status.HOLE,
            m[8]: Status.MISSING,
            m[10]: Status.MISMATCH,
        }
        assert [(h.first, h.last, h.inside) for h in flagged[m[2]].holes] == [
            (inside[0].agg_id, inside[-1].agg_id, True)
        ]
        boundary = [(h.first, h.last, h.minutes) for h in flagged[m[5]].holes]
        assert boundary == [(across[0].agg_id, across[-1].agg_id, (m[5], m[6]))]
        assert [(h.first, h.last) for h in flagged[m[6]].holes] == [boundary[0][:2]]
        assert [(h.first, h.last) for h in flagged[m[8]].holes] == [
            (whole[0].agg_id, whole[-1].agg_id)
        ]
        assert flagged[m[8]].exchange_trades == sum(t.trade_count for t in whole)
        figures = {d.figure for d in flagged[m[10]].differences}
        assert figures == {"volume", "taker_buy_volume"}
        assert not flagged[m[10]].holes
        assert len(report.checks) == MINUTES
        assert stored(db_url) != expected(tape.trades)
        # what the dashboard reads: every minute's verdict, the missing one included
        shown = dashboard_checks(db_url, first, last)
        assert shown == [(minute_text(k), flagged[k].status.value if k in flagged else "exact")
                         for k in m]  # fmt: skip

        repaired = await verify(db_url, emu.rest_url, first, last, repair=True)
        assert repaired.all_exact and len(repaired.checks) == MINUTES
        assert repaired.minutes_repaired == 5 and repaired.rows_rebuilt == 1
        rebuilt = len(minutes[m[10]])
        assert repaired.trades_repaired == len(removed) + rebuilt
        after = stored(db_url)
        assert after == expected(tape.trades)  # every row equal to `tradepipe aggregate`

        again = await verify(db_url, emu.rest_url, first, last, repair=True)
        assert again.all_exact
        assert (again.minutes_repaired, again.trades_repaired, again.rows_rebuilt) == (0, 0, 0)
        assert stored(db_url) == after
        assert dashboard_checks(db_url, first, last) == [(minute_text(k), "exact") for k in m]
    # the independent tally: every trade of the tape counted once, none twice
    counts = [int(r[2]) + int(r[3]) for r in after]
    assert sum(counts) == len(tape.trades)


async def test_repair_never_double_counts_what_is_already_stored(
    db_url: str, start_emulator: StartEmulator
) -> None:
    """Holes next to stored trades: the pages fetched overlap stored ids; the ledger keeps the
    sums exact, seeded over many hole positions."""
    tape = sample_tape()
    minutes = by_minute(tape.trades)
    m = sorted(minutes)[:4]
    trades = [t for t in tape.trades if minute_of(t.time_ms) in m]
    small = tape_of(trades)
    async with start_emulator(small, speed=0, start_now=True) as emu:
        await emu.finished.wait()
        for seed in range(6):
            url = db_url
            positions = random.Random(seed).sample(range(len(trades)), 3)
            removed = {trades[p].agg_id for p in positions}
            if seed % 3 == 1:  # the first minute gone too: no row bounds it (fetched by time)
                removed |= {t.agg_id for t in minutes[m[0]]}
            elif seed % 3 == 2:  # the last trades of the range: no id visibly missing (rebuilt)
                removed |= {t.agg_id for t in minutes[m[-1]][-2:]}
            conn = connect(parse_db_url(url))
            try:
                with conn.transaction():
                    conn.execute_many("DELETE FROM trade_minutes", [()])
            finally:
                conn.close()
            load(url, [t for t in trades if t.agg_id not in removed])
            report = await verify(url, emu.rest_url, m[0], m[-1], repair=True)
            assert report.all_exact, seed
            assert report.rows_rebuilt == (1 if seed % 3 == 2 else 0), seed
            if seed % 3 != 2:  # by the upsert: exactly the removed trades are new to the ledger
                assert report.trades_repaired == len(removed), seed
            else:  # a rebuilt row counts all of its minute's trades
                assert report.trades_repaired >= len(removed), seed
            after = stored(url)
            assert after == expected(trades), seed
            assert sum(int(r[2]) + int(r[3]) for r in after) == len(trades), seed


async def test_command_line_reports_jsonl_and_exits_by_the_result(
    tmp_path: Path, start_emulator: StartEmulator
) -> None:
    """The real command in a real process: jsonl on stdout, summary last on stderr, exit 4,
    then --repair exit 0; checks stored in minute_checks; metrics in the textfile."""
    from tests.store.helpers import migrated

    url = migrated(f"sqlite:///{tmp_path}/cli.db")
    tape = sample_tape()
    minutes = by_minute(tape.trades)
    m = sorted(minutes)[:3]
    trades = [t for t in tape.trades if minute_of(t.time_ms) in m]
    gone = trades[50].agg_id
    load(url, [t for t in trades if t.agg_id != gone])
    textfile = tmp_path / "verify.prom"
    env = {**os.environ, "TRADEPIPE_VERIFY_TEXTFILE": str(textfile)}
    async with start_emulator(tape_of(trades), speed=0, start_now=True) as emu:
        await emu.finished.wait()
        args = ["--db", url, "--rest-url", emu.rest_url, "--symbol", "btcusdt",
                "--since", minute_text(m[0]), "--until", minute_text(m[-1])]  # fmt: skip
        rc, out, err = await tradepipe("verify", *args, "--format", "jsonl", env=env)
        assert rc == 4, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert [(x["symbol"], x["minute"], x["status"]) for x in lines] == [
            ("BTCUSDT", minute_text(minute_of(trades[50].time_ms)), "hole")
        ]
        assert lines[0]["holes"][0]["first_id"] == gone and "missing" in lines[0]["detail"]
        # ETHUSDT has no rows there: no minute of it to prove
        assert err.splitlines()[-1].startswith("tradepipe verify: 3 minutes of 1 symbols: 2 exact")
        assert 'tradepipe_verify_minutes{status="hole"} 1.0' in textfile.read_text()
        rc, out, err = await tradepipe("verify", *args, env=env)  # text, still not repaired
        assert rc == 4, err
        hole_minute = minute_text(minute_of(trades[50].time_ms))
        (line,) = out.splitlines()
        assert line.startswith(f"BTCUSDT {hole_minute} hole: ids {gone} missing (1); trades: ours")
        # a symbol the exchange refuses: exit 1, the exchange's answer named
        rc, out, err = await tradepipe("verify", "--symbol", "nosuch", "btcusdt", *args, env=env)
        assert (rc, out) == (1, "") and "Invalid symbol" in err.splitlines()[-1]
        rc, out, err = await tradepipe("verify", *args, "--repair", env=env)
        assert (rc, out) == (0, ""), err
        assert "repaired 1 minutes (1 trades" in err.splitlines()[-1]
        assert "tradepipe_verify_trades_repaired_total 1.0" in textfile.read_text()
    conn = connect(parse_db_url(url))
    try:
        rows = conn.query("SELECT status, COUNT(*) FROM minute_checks GROUP BY status")
    finally:
        conn.close()
    assert rows == [("exact", 3)]
    rc, _, err = await tradepipe("verify", "--db", url, "--since", "yesterday", env=env)
    assert rc == 2 and "not a time" in err


async def tradepipe(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradepipe.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
