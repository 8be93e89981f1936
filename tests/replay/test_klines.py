"""``/api/v3/klines`` over real HTTP: the emulator's klines equal Binance's own for the same
trades (the recorded kline_1m stream of the cryptofeed sample), and the parameter rules."""

from __future__ import annotations

import json

import aiohttp

from tradepipe.core import Trade
from tradepipe.replay import Tape, tape_of

from .helpers import DATA, StartEmulator

KLINES = DATA / "cryptofeed-BINANCE-ee25be.btcusdt.kline_1m.ndjson"


def binance_klines() -> list[dict[str, object]]:
    """Binance's kline updates of the minute the aggTrades cover from its first trade (20:04:
    rule in ../shared/data/binance/SOURCES-full.md), each as of its last trade id ``L``."""
    updates = [json.loads(line)["k"] for line in KLINES.read_text().splitlines()]
    return [k for k in updates if k["t"] == 1617566640000]


def as_rest(k: dict[str, object]) -> list[object]:
    """A kline_1m stream object in the ``/api/v3/klines`` array layout."""
    return [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"],
            k["Q"], "0"]  # fmt: skip


async def klines(session: aiohttp.ClientSession, base: str, **params: str) -> tuple[int, object]:
    async with session.get(f"{base}/api/v3/klines", params=params) as resp:
        return resp.status, await resp.json()


async def test_klines_equal_binances_own_for_the_same_trades(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    btc = [t for t in real_tape.trades if t.symbol == "BTCUSDT"]
    updates = binance_klines()
    assert len(updates) >= 15  # one per ~2 s of the minute, each a prefix of its trades
    async with aiohttp.ClientSession() as session:
        for k in updates:
            # the trades Binance had counted in this update: the minute's, up to trade id L
            counted: list[Trade] = [
                t
                for t in btc
                if t.time_ms >= 1617566640000 and t.last_id <= k["L"]  # type: ignore[operator]
            ]
            async with start_emulator(tape_of(counted), speed=0, start_now=True) as emu:
                await emu.finished.wait()
                status, body = await klines(
                    session, emu.rest_url, symbol="BTCUSDT", interval="1m",
                    startTime="1617566640000", endTime="1617566640000",
                )  # fmt: skip
            assert status == 200
            assert body == [as_rest(k)], k["L"]


async def test_klines_cover_every_minute_with_trades_and_follow_binance_parameters(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with (
        start_emulator(real_tape, speed=0, start_now=True) as emu,
        aiohttp.ClientSession() as session,
    ):
        await emu.finished.wait()
        base = emu.rest_url
        status, body = await klines(session, base, symbol="ETHUSDT", interval="1m")
        assert status == 200 and isinstance(body, list)
        assert [k[0] for k in body] == [1617566580000, 1617566640000]
        eth = [t for t in real_tape.trades if t.symbol == "ETHUSDT"]
        assert sum(k[8] for k in body) == sum(t.last_id - t.first_id + 1 for t in eth)
        status, body = await klines(session, base, symbol="ETHUSDT", interval="1m", limit="1")
        assert status == 200 and [k[0] for k in body] == [1617566640000]  # the most recent
        status, body = await klines(
            session, base, symbol="ETHUSDT", interval="1m", startTime="0", limit="1"
        )
        assert status == 200 and [k[0] for k in body] == [1617566580000]
        for params, code in [
            ({"symbol": "ETHUSDT"}, -1102),
            ({"symbol": "ETHUSDT", "interval": "5m"}, -1120),
            ({"symbol": "NOPE", "interval": "1m"}, -1121),
            ({"symbol": "ETHUSDT", "interval": "1m", "limit": "1001"}, -1130),
            ({"symbol": "ETHUSDT", "interval": "1m", "startTime": "x"}, -1100),
            ({"symbol": "ETHUSDT", "interval": "1m", "fromId": "1"}, -1104),
        ]:
            status, body = await klines(session, base, **params)
            assert (status, body["code"]) == (400, code), params  # type: ignore[index]
