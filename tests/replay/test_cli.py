"""``tradepipe replay`` as a separate process, as the end-to-end tests run it."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp
import msgspec
from websockets.asyncio.client import connect

from tradepipe.core import ParseError, parse_event
from tradepipe.replay import Tape

from .helpers import drain, drain_raw

LISTENING_RE = re.compile(rb"^listening (ws://127\.0\.0\.1:(\d+)) (http://127\.0\.0\.1:\d+)$")


async def start_cli(*args: str) -> tuple[asyncio.subprocess.Process, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradepipe.cli", "replay", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        line = (await proc.stdout.readline()).strip()
    match = LISTENING_RE.match(line)
    assert match, line
    return proc, match.group(1).decode(), match.group(3).decode()


async def test_cli_prints_its_address_serves_and_stops_on_sigterm(
    real_files: list[Path], real_tape: Tape, tmp_path: Path
) -> None:
    record = tmp_path / "served.ndjson"
    proc, ws_url, rest_url = await start_cli(
        *map(str, real_files), "--speed", "0", "--record", str(record), "--malformed", "5"
    )
    try:
        url = f"{ws_url}/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
        async with connect(url, ping_interval=None) as ws:
            got = await drain_raw(ws, quiet=0.5)
        trades, bad = [], 0
        for message in got:
            try:
                trades.append(parse_event(message))
            except ParseError:
                bad += 1
        assert (len(trades), bad) == (len(real_tape.trades), 5)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{rest_url}/_control/status") as resp:
                status = await resp.json()
            async with session.post(f"{rest_url}/_control/pause") as resp:
                assert (await resp.json())["paused"] is True
        assert status["published"] == len(real_tape.trades)
        assert status["malformed_sent"] == 5
        assert status["finished"] is True
        assert proc.stdout is not None
        async with asyncio.timeout(5):
            assert (await proc.stdout.readline()).strip() == (
                f"replay finished: {len(real_tape.trades)} trades".encode()
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            code = await proc.wait()
    assert code == 0
    recorded = [parse_event(line) for line in record.read_bytes().splitlines()]
    assert sorted(recorded, key=lambda t: (t.symbol, t.agg_id)) == sorted(
        trades, key=lambda t: (t.symbol, t.agg_id)
    )


async def test_cli_control_over_http_drops_and_injects(real_files: list[Path]) -> None:
    proc, ws_url, rest_url = await start_cli(str(real_files[0]), "--speed", "0")
    try:
        async with (
            connect(f"{ws_url}/ws/btcusdt@aggTrade", ping_interval=None) as ws,
            aiohttp.ClientSession() as session,
        ):
            await drain(ws)
            async with session.post(f"{rest_url}/_control/inject", data=b'{"e":"x"}') as resp:
                assert (await resp.json())["sent_to"] == 1
            assert msgspec.json.decode(await ws.recv()) == {"e": "x"}
            async with session.post(f"{rest_url}/_control/drop") as resp:
                assert (await resp.json())["dropped"] == 1
            await ws.wait_closed()
            assert ws.close_code == 1006  # no close frame: a dropped network connection
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0


async def test_cli_reports_bad_lines_and_refuses_unreadable_files(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.ndjson"
    good = (
        b'{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT","a":1,"p":"58001.03000000",'
        b'"q":"0.08620500","f":7,"l":7,"T":1617566591314,"m":true,"M":true}'
    )
    mixed.write_bytes(good + b"\n{broken\n")
    proc, _, rest_url = await start_cli(str(mixed), "--start-now", "--speed", "0")
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(10):
                while True:
                    async with session.get(f"{rest_url}/_control/status") as resp:
                        if (await resp.json())["finished"]:
                            break
                    await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    assert proc.returncode == 0
    assert f"{mixed}:2: rejected: invalid_json".encode() in err
    assert b"loaded 1 trades of BTCUSDT from 1 file(s); 1 lines rejected" in err

    missing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradepipe.cli", "replay", str(tmp_path / "nope.ndjson"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await missing.communicate()
    assert missing.returncode == 2
    assert b"nope.ndjson: cannot read" in err


async def test_cli_serves_a_generated_market_with_symbols_n() -> None:
    proc, ws_url, rest_url = await start_cli(
        "--symbols", "25", "--minutes", "1", "--market-rate", "200", "--unlisted", "ETHUSDT"
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{rest_url}/api/v3/exchangeInfo") as resp:
                info = await resp.json()
        status = {s["symbol"]: s["status"] for s in info["symbols"]}
        assert len(status) == 25 and status["ETHUSDT"] == "BREAK"
        assert sum(1 for s in status.values() if s == "TRADING") == 24
        async with connect(f"{ws_url}/stream?streams=btcusdt@aggTrade", ping_interval=None) as ws:
            first = await asyncio.wait_for(ws.recv(), 10)
        assert parse_event(first).symbol == "BTCUSDT"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_cli_refuses_files_with_symbols_n_and_unknown_unlisted(tmp_path: Path) -> None:
    empty = tmp_path / "x.ndjson"
    empty.write_text("")
    for args in (
        ("--symbols", "5", str(empty)),
        ("--symbols", "0"),
        ("--symbols", "5", "--unlisted", "NOPEUSDT"),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradepipe.cli", "replay", "--port", "0", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2, (args, err)
        assert err.startswith(b"tradepipe replay: "), err
