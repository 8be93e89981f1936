"""A generated market of many symbols: its rates, ``exchangeInfo``, listing and delisting
mid-run, and faults on one connection only (real sockets, real clients)."""

from __future__ import annotations

import asyncio
import collections
import statistics

import aiohttp
import msgspec
from websockets.asyncio.client import connect

from tradepipe.replay.market import split_symbol
from tradepipe.replay.sample import Bursts, market, market_models, market_tape

from .helpers import StartEmulator, drain, recv_until


def test_market_rates_are_heavy_tailed_and_sum_to_the_rate() -> None:
    models = market_models(400, rate=3000.0, seed=3)
    rates = [m.trades_per_minute / 60 for m in models]
    assert abs(sum(rates) - 3000.0) < 1e-6
    assert len({m.symbol for m in models}) == 400
    assert rates == sorted(rates, reverse=True)
    top10 = sum(rates[:10]) / sum(rates)
    assert 0.35 < top10 < 0.75, top10  # Zipf: the few big pairs carry much of the market
    assert statistics.median(rates) < sum(rates) / len(rates) / 3
    assert {split_symbol(m.symbol)[1] for m in models} == {"USDT", "FDUSD", "BTC"}
    assert market_models(400, 3000.0, seed=3) == models  # seeded


def test_generated_market_matches_its_rates_and_keeps_ids_contiguous() -> None:
    lines = market(60, rate=1000.0, minutes=2, seed=1)
    assert 0.85 * 120_000 < len(lines) < 1.15 * 120_000
    by_symbol: dict[str, list[int]] = collections.defaultdict(list)
    for line in lines:
        obj = msgspec.json.decode(line)
        by_symbol[obj["s"]].append(obj["a"])
    assert len(by_symbol) == 60
    for ids in by_symbol.values():
        assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_market_bursts_raise_the_rate_ten_times_and_keep_the_average() -> None:
    bursts = Bursts(x=10.0, seconds=5.0, every=60.0)
    tape = market_tape(40, rate=500.0, minutes=3, seed=2, bursts=bursts)
    start = tape.first_time_ms - tape.first_time_ms % 60_000  # the sample starts on a minute
    per_second = collections.Counter((t.time_ms - start) // 1000 for t in tape.trades)
    inside = [per_second[s] for s in range(180) if s % 60 >= 55]
    outside = [per_second[s] for s in range(180) if s % 60 < 55]
    ratio = statistics.mean(inside) / statistics.mean(outside)
    assert 6.0 < ratio < 14.0, ratio
    assert 0.8 * 500 < len(tape.trades) / 180 < 1.2 * 500


async def test_exchange_info_lists_the_tape_and_follows_listing_changes(
    start_emulator: StartEmulator,
) -> None:
    tape = market_tape(30, rate=300.0, minutes=1, seed=4)
    later = tape.symbols[10]
    async with (
        start_emulator(tape, speed=0, unlisted=(later,)) as emu,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{emu.rest_url}/api/v3/exchangeInfo") as resp:
            info = await resp.json()
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "20"
        status = {s["symbol"]: s for s in info["symbols"]}
        assert sorted(status) == tape.symbols
        assert status["BTCUSDT"] == {
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"
        }  # fmt: skip
        assert status[later]["status"] == "BREAK"
        async with http.post(f"{emu.rest_url}/_control/delist?symbol=ethusdt") as resp:
            assert (await resp.json())["status"] == "BREAK"
        async with http.post(f"{emu.rest_url}/_control/list?symbol={later}") as resp:
            assert resp.status == 200
        async with http.post(f"{emu.rest_url}/_control/list?symbol=NOPEUSDT") as resp:
            assert resp.status == 400
        async with http.get(f"{emu.rest_url}/api/v3/exchangeInfo") as resp:
            after = {s["symbol"]: s["status"] for s in (await resp.json())["symbols"]}
        assert after["ETHUSDT"] == "BREAK" and after[later] == "TRADING"


async def test_only_trading_symbols_are_published(start_emulator: StartEmulator) -> None:
    tape = market_tape(20, rate=400.0, minutes=1, seed=5)
    listed_later = tape.symbols[5]
    async with start_emulator(tape, speed=0, unlisted=(listed_later,)) as emu:
        emu.pause()
        emu.start_clock()
        emu.delist_symbol("ETHUSDT")
        emu.resume()
        await emu.finished.wait()
        assert emu.published.count_of("ETHUSDT") == 0
        assert emu.published.count_of(listed_later) == 0
        on_tape = collections.Counter(t.symbol for t in tape.trades)
        published = sum(on_tape[s] for s in tape.symbols if s not in ("ETHUSDT", listed_later))
        assert emu.published.count == published


async def test_drop_cuts_only_the_connections_carrying_a_stream(
    start_emulator: StartEmulator,
) -> None:
    tape = market_tape(4, rate=100.0, minutes=1, seed=6)
    async with start_emulator(tape, speed=0, start_now=True) as emu:
        await emu.finished.wait()  # quiet from now on: only control replies
        a = await connect(f"{emu.ws_url}/stream?streams=btcusdt@aggTrade")
        b = await connect(f"{emu.ws_url}/stream?streams=ethusdt@aggTrade")
        await b.send(msgspec.json.encode({"method": "LIST_SUBSCRIPTIONS", "id": 1}).decode())
        await recv_until(b, lambda m: m.get("id") == 1)
        async with aiohttp.ClientSession() as http:
            url = f"{emu.rest_url}/_control/drop?stream=btcusdt@aggTrade"
            async with http.post(url) as resp:
                assert (await resp.json())["dropped"] == 1
        async with asyncio.timeout(10):
            await a.wait_closed()
        await b.send(msgspec.json.encode({"method": "LIST_SUBSCRIPTIONS", "id": 2}).decode())
        replies = [m for m in await drain(b) if m.get("id") == 2]
        assert replies == [{"result": ["ethusdt@aggTrade"], "id": 2}]
        await b.close()
