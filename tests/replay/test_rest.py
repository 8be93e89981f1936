"""REST ``/api/v3/aggTrades`` over real HTTP: paging, time windows, limits, errors, weight."""

from __future__ import annotations

import aiohttp
import pytest

from tradepipe.core import Trade, trade_from_object
from tradepipe.replay import Tape, load_tape

from .helpers import SAMPLES, StartEmulator, rest_all, rest_page


async def test_paging_with_from_id_returns_every_trade_once_in_order(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    tapes = [real_tape] + ([load_tape([str(p) for p in SAMPLES])] if SAMPLES else [])
    for tape in tapes:
        async with (
            start_emulator(tape, speed=0, start_now=True) as emu,
            aiohttp.ClientSession() as session,
        ):
            await emu.finished.wait()
            for symbol in tape.symbols:
                expected = [t for t in tape.trades if t.symbol == symbol]
                for limit in (1000, 333):
                    got = await rest_all(session, emu.rest_url, symbol, 0, limit=limit)
                    assert got == expected, (symbol, limit)


async def test_rest_objects_have_binance_rest_shape(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with (
        start_emulator(real_tape, speed=0, start_now=True) as emu,
        aiohttp.ClientSession() as session,
    ):
        await emu.finished.wait()
        status, page, headers = await rest_page(session, emu.rest_url, symbol="ETHUSDT")
    assert status == 200
    assert len(page) == 500  # default limit: the most recent 500
    assert all(list(obj) == ["a", "p", "q", "f", "l", "T", "m", "M"] for obj in page)
    eth = [t for t in real_tape.trades if t.symbol == "ETHUSDT"]
    assert [trade_from_object(o, "ETHUSDT") for o in page] == eth[-500:]
    assert headers["Content-Type"].startswith("application/json")


async def test_start_and_end_time(real_tape: Tape, start_emulator: StartEmulator) -> None:
    btc = [t for t in real_tape.trades if t.symbol == "BTCUSDT"]
    start, end = btc[100].time_ms, btc[400].time_ms

    def window(lo: int | None, hi: int | None) -> list[Trade]:
        return [
            t for t in btc if (lo is None or t.time_ms >= lo) and (hi is None or t.time_ms <= hi)
        ]

    async with (
        start_emulator(real_tape, speed=0, start_now=True) as emu,
        aiohttp.ClientSession() as session,
    ):
        await emu.finished.wait()
        base = emu.rest_url
        _, page, _ = await rest_page(
            session, base, symbol="BTCUSDT", startTime=start, endTime=end, limit=1000
        )
        assert [trade_from_object(o, "BTCUSDT") for o in page] == window(start, end)
        _, page, _ = await rest_page(session, base, symbol="BTCUSDT", startTime=start, limit=50)
        assert [trade_from_object(o, "BTCUSDT") for o in page] == window(start, None)[:50]
        _, page, _ = await rest_page(session, base, symbol="BTCUSDT", endTime=end, limit=50)
        assert [trade_from_object(o, "BTCUSDT") for o in page] == window(None, end)[-50:]
        _, page, _ = await rest_page(session, base, symbol="BTCUSDT", startTime=end, endTime=start)
        assert page == []


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"symbol": "BTCUSDT", "limit": 1000}, 200, None),
        ({"symbol": "BTCUSDT", "limit": 1}, 200, None),
        ({"symbol": "BTCUSDT", "limit": 1001}, 400, -1130),
        ({"symbol": "BTCUSDT", "limit": 0}, 400, -1130),
        ({"symbol": "BTCUSDT", "limit": "ten"}, 400, -1100),
        ({"symbol": "BTCUSDT", "fromId": "-5"}, 400, -1100),
        ({"symbol": "NOPEUSDT"}, 400, -1121),
        ({"symbol": "btcusdt"}, 400, -1121),
        ({}, 400, -1102),
        ({"symbol": "BTCUSDT", "colour": "red"}, 400, -1104),
    ],
)
async def test_limits_and_errors(
    real_tape: Tape,
    start_emulator: StartEmulator,
    params: dict[str, object],
    status: int,
    code: int | None,
) -> None:
    async with (
        start_emulator(real_tape, speed=0, start_now=True) as emu,
        aiohttp.ClientSession() as session,
    ):
        await emu.finished.wait()
        got_status, body, headers = await rest_page(session, emu.rest_url, **params)
    assert got_status == status
    assert headers["X-MBX-USED-WEIGHT-1M"] == "4"
    if code is None:
        assert len(body) == params["limit"]
    else:
        assert body["code"] == code and body["msg"]


async def test_request_weight_header_and_429(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with (
        start_emulator(real_tape, speed=0, start_now=True, rest_weight_limit=12) as emu,
        aiohttp.ClientSession() as session,
    ):
        used = []
        for _ in range(3):
            status, _, headers = await rest_page(session, emu.rest_url, symbol="BTCUSDT")
            assert status == 200
            used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
        status, body, headers = await rest_page(session, emu.rest_url, symbol="BTCUSDT")
    # (a minute boundary between requests would reset the count: allow for it)
    assert used == [4, 8, 12] or used[-1] < 12
    if used == [4, 8, 12]:
        assert status == 429
        assert body["code"] == -1003
        assert 1 <= int(headers["Retry-After"]) <= 60


async def test_rest_serves_only_published_trades(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with (
        start_emulator(real_tape, speed=0, start_now=True) as emu,
        aiohttp.ClientSession() as session,
    ):
        emu.pause()
        _, page, _ = await rest_page(session, emu.rest_url, symbol="BTCUSDT", fromId=0)
        assert page == []
        emu.resume()
        await emu.wait_published(300)
        emu.pause()
        published = emu.published.count_of("BTCUSDT")
        assert 0 < published < 1227
        got = await rest_all(session, emu.rest_url, "BTCUSDT", 0)
        assert [t.agg_id for t in got] == [
            t.agg_id for t in real_tape.trades if t.symbol == "BTCUSDT"
        ][:published]
