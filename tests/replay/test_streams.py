"""The WebSocket side over real sockets: subscriptions, wrappers, pings, limits, faults."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgspec
import pytest
import websockets
from tests.conftest import unavailable
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tradepipe.core import ParseError, Trade, parse_event
from tradepipe.replay import Tape, load_tape

from .helpers import SAMPLES, StartEmulator, drain, rest_all


def of(tape: Tape, symbol: str) -> list[Trade]:
    return [t for t in tape.trades if t.symbol == symbol]


async def test_raw_stream_by_url_gets_every_trade_in_order(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with start_emulator(real_tape, speed=0) as emu:
        async with connect(f"{emu.ws_url}/ws/btcusdt@aggTrade", ping_interval=None) as ws:
            got = await drain(ws)
    assert all(m["e"] == "aggTrade" and "stream" not in m for m in got)
    assert [parse_event(m) for m in got] == of(real_tape, "BTCUSDT")
    assert emu.log_lines[-1] == f"replay finished: {len(real_tape.trades)} trades"  # type: ignore[attr-defined]


async def test_combined_stream_by_url_wraps_each_event(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    url = "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    async with start_emulator(real_tape, speed=0) as emu:
        async with connect(emu.ws_url + url, ping_interval=None) as ws:
            got = await drain(ws)
    assert len(got) == len(real_tape.trades)
    for msg in got:
        assert set(msg) == {"stream", "data"}
        assert msg["stream"] == msg["data"]["s"].lower() + "@aggTrade"
    assert [parse_event(m) for m in got] == list(real_tape.trades)


async def test_subscribe_by_message_with_replies(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with start_emulator(real_tape, speed=0) as emu:
        async with connect(f"{emu.ws_url}/ws", ping_interval=None) as ws:
            await asyncio.sleep(0.2)
            assert emu.published.count == 0  # the clock waits for a subscription
            await ws.send('{"method":"SUBSCRIBE","params":["ethusdt@aggTrade"],"id":1}')
            assert msgspec.json.decode(await ws.recv()) == {"result": None, "id": 1}
            got = await drain(ws)
            assert [parse_event(m) for m in got] == of(real_tape, "ETHUSDT")
            await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":2}')
            assert msgspec.json.decode(await ws.recv()) == {"result": ["ethusdt@aggTrade"], "id": 2}
            await ws.send('{"method":"UNSUBSCRIBE","params":["ethusdt@aggTrade"],"id":3}')
            assert msgspec.json.decode(await ws.recv()) == {"result": None, "id": 3}
            await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":4}')
            assert msgspec.json.decode(await ws.recv()) == {"result": [], "id": 4}
            await ws.send('{"method":"NOPE","id":5}')
            error = msgspec.json.decode(await ws.recv())
            assert error["code"] == 2 and error["id"] == 5


async def test_unsubscribed_stream_stops_and_combined_property_wraps(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with start_emulator(real_tape, speed=0, start_now=True) as emu:
        emu.pause()  # nothing published yet: the publisher has not run
        async with connect(f"{emu.ws_url}/ws", ping_interval=None) as ws:
            for request in (
                '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","ethusdt@aggTrade"],"id":1}',
                '{"method":"UNSUBSCRIBE","params":["ethusdt@aggTrade"],"id":2}',
                '{"method":"SET_PROPERTY","params":["combined",true],"id":3}',
            ):
                await ws.send(request)
                assert msgspec.json.decode(await ws.recv())["result"] is None
            emu.resume()
            got = await drain(ws)
    assert {m["stream"] for m in got} == {"btcusdt@aggTrade"}
    assert [parse_event(m) for m in got] == of(real_tape, "BTCUSDT")


async def test_server_pings_and_unanswered_ping_closes(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with (
        start_emulator(real_tape, speed=0, ping_interval=0.2, pong_timeout=0.7) as emu,
        aiohttp.ClientSession() as session,
    ):
        # websockets answers pings (echoing the payload): the connection stays up
        async with connect(f"{emu.ws_url}/ws", ping_interval=None) as good:
            # aiohttp with autoping=False never answers: closed after the pong timeout
            async with session.ws_connect(f"{emu.ws_url}/ws", autoping=False) as bad:
                loop = asyncio.get_running_loop()
                started = loop.time()
                pings = 0
                async with asyncio.timeout(5):
                    while True:
                        msg = await bad.receive()
                        if msg.type == aiohttp.WSMsgType.PING:
                            pings += 1
                            assert msg.data  # Binance-style: a payload to echo
                        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            break
                elapsed = loop.time() - started
                assert pings >= 2
                assert bad.close_code == 1008
                assert 0.7 <= elapsed < 4
            await good.send('{"method":"LIST_SUBSCRIPTIONS","id":9}')
            assert msgspec.json.decode(await good.recv()) == {"result": [], "id": 9}
            assert len(emu.connections) == 1


async def test_connection_lifetime_limit_closes_like_24h(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with start_emulator(real_tape, speed=0, max_connection_seconds=0.5) as emu:
        async with connect(f"{emu.ws_url}/ws", ping_interval=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    async with start_emulator(real_tape, speed=0) as emu:
        async with connect(f"{emu.ws_url}/ws", ping_interval=None) as ws:
            await asyncio.sleep(0.1)
            assert emu.expire_connections() == 1
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_too_many_incoming_messages_disconnects(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    async with start_emulator(real_tape, speed=0, max_incoming_per_second=5) as emu:
        async with connect(f"{emu.ws_url}/ws", ping_interval=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                for i in range(20):
                    await ws.send(f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}')
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_inject_and_server_shutdown(real_tape: Tape, start_emulator: StartEmulator) -> None:
    async with start_emulator(real_tape, speed=0) as emu:
        async with (
            connect(f"{emu.ws_url}/ws/btcusdt@aggTrade", ping_interval=None) as raw,
            connect(f"{emu.ws_url}/stream?streams=btcusdt@aggTrade", ping_interval=None) as comb,
        ):
            await drain(raw)
            await drain(comb)
            assert emu.inject_raw("{garbage") == 2
            assert await raw.recv() == "{garbage"
            assert await comb.recv() == "{garbage"
            assert emu.send_server_shutdown() == 2
            assert msgspec.json.decode(await raw.recv())["e"] == "serverShutdown"
            wrapped = msgspec.json.decode(await comb.recv())
            assert wrapped["stream"] == "!serverShutdown"
            assert wrapped["data"]["e"] == "serverShutdown"


async def test_malformed_messages_are_mixed_in(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    url = "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    async with start_emulator(real_tape, speed=0, malformed=60, seed=3) as emu:
        async with connect(emu.ws_url + url, ping_interval=None) as ws:
            messages: list[str | bytes] = []
            while True:
                try:
                    async with asyncio.timeout(0.3):
                        messages.append(await ws.recv())
                except TimeoutError:
                    break
        assert emu.malformed_sent == 60
    good: list[Trade] = []
    bad = 0
    for message in messages:
        try:
            good.append(parse_event(message))
        except ParseError:
            bad += 1
    assert bad == 60
    assert good == list(real_tape.trades)


async def test_drop_loses_live_trades_which_rest_returns(
    real_tape: Tape, start_emulator: StartEmulator
) -> None:
    btc = of(real_tape, "BTCUSDT")
    url = "/ws/btcusdt@aggTrade"
    async with (
        start_emulator(real_tape, speed=0, start_now=True) as emu,
        aiohttp.ClientSession() as session,
    ):
        emu.pause()
        live: list[Trade] = []
        async with connect(emu.ws_url + url, ping_interval=None) as ws:
            emu.resume()
            await emu.wait_published(400)
            emu.pause()
            live += [parse_event(m) for m in await drain(ws)]
            assert emu.drop_connections() == 1
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
        emu.resume()
        await emu.wait_published(900)  # published while nobody is connected
        emu.pause()
        async with connect(emu.ws_url + url, ping_interval=None) as ws:
            emu.resume()
            after = [parse_event(m) for m in await drain(ws)]
        assert after, "trades after the reconnect"
        gap_from, gap_to = live[-1].agg_id + 1, after[0].agg_id - 1
        assert gap_to - gap_from + 1 >= 300  # the drop really lost live trades
        backfill = await rest_all(session, emu.rest_url, "BTCUSDT", gap_from, until_id=gap_to)
    assert live + backfill + after == btc


async def test_slow_consumer_is_disconnected_and_the_clock_goes_on(
    start_emulator: StartEmulator,
) -> None:
    if not SAMPLES:
        unavailable("samples/*.ndjson.gz not found")
    tape = load_tape([str(SAMPLES[0])])
    options = {"speed": 0, "queue_high_water": 200, "slow_client_seconds": 0.5}
    async with start_emulator(tape, **options) as emu, aiohttp.ClientSession() as session:
        stream = tape.trades[0].symbol.lower() + "@aggTrade"
        async with session.ws_connect(f"{emu.ws_url}/ws/{stream}") as ws:  # never reads
            async with asyncio.timeout(60):
                await emu.finished.wait()
            assert any("slow consumer" in line for line in emu.log_lines)  # type: ignore[attr-defined]
            assert ws is not None
    assert emu.published.count == len(tape.trades)


async def test_data_dump_csv_and_microsecond_times(
    real_files: list[Path], start_emulator: StartEmulator
) -> None:
    csv = (
        real_files[0].parent
        / "binance-public-data-issue354.BTCUSDT-aggTrades-2021-12-14.tail10.csv"
    )
    if not csv.exists():
        unavailable(f"real data-dump CSV not found: {csv}")
    tape = load_tape([str(csv)])
    assert len(tape.trades) == 10
    async with start_emulator(tape, speed=0) as emu:
        url = f"{emu.ws_url}/stream?streams=btcusdt@aggTrade&timeUnit=MICROSECOND"
        async with connect(url, ping_interval=None) as ws:
            got = await drain(ws)
    assert [m["data"]["T"] for m in got] == [t.time_ms * 1000 for t in tape.trades]
    assert [parse_event(m) for m in got] == list(tape.trades)  # the core reads µs as well
