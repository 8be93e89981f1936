"""Client-side helpers for the emulator tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from websockets.asyncio.client import ClientConnection

from tradepipe.core import Trade, trade_from_object
from tradepipe.replay import Emulator

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "binance"
REAL_FILES = [
    DATA / "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson",
    DATA / "cryptofeed-BINANCE-ee25be.ethusdt.aggTrade.ndjson",
]
SAMPLES = sorted((ROOT / "samples").glob("*-aggtrades-*.ndjson.gz"))

StartEmulator = Callable[..., contextlib.AbstractAsyncContextManager[Emulator]]


async def drain_raw(ws: ClientConnection, quiet: float = 0.3) -> list[str | bytes]:
    """Every message until none arrives for ``quiet`` seconds, as received."""
    out: list[str | bytes] = []
    while True:
        try:
            async with asyncio.timeout(quiet):
                out.append(await ws.recv())
        except TimeoutError:
            return out


async def drain(ws: ClientConnection, quiet: float = 0.3) -> list[Any]:
    """Every message until none arrives for ``quiet`` seconds, decoded."""
    return [msgspec.json.decode(m) for m in await drain_raw(ws, quiet)]


async def recv_until(ws: ClientConnection, predicate: Any, limit: int = 100_000) -> list[Any]:
    """Messages up to and including the first one ``predicate`` accepts."""
    out: list[Any] = []
    for _ in range(limit):
        out.append(msgspec.json.decode(await ws.recv()))
        if predicate(out[-1]):
            return out
    raise AssertionError("predicate never matched")


async def rest_page(
    session: aiohttp.ClientSession, base: str, **params: Any
) -> tuple[int, Any, Any]:
    query = {k: str(v) for k, v in params.items()}
    async with session.get(f"{base}/api/v3/aggTrades", params=query) as resp:
        return resp.status, await resp.json(), resp.headers


async def rest_all(
    session: aiohttp.ClientSession,
    base: str,
    symbol: str,
    from_id: int,
    until_id: int | None = None,
    limit: int = 1000,
) -> list[Trade]:
    """Page with ``fromId`` from ``from_id`` to the end (or through ``until_id``)."""
    out: list[Trade] = []
    while True:
        status, page, _ = await rest_page(session, base, symbol=symbol, fromId=from_id, limit=limit)
        assert status == 200, page
        for obj in page:
            if until_id is not None and obj["a"] > until_id:
                return out
            out.append(trade_from_object(obj, symbol))
        if len(page) < limit:
            return out
        from_id = page[-1]["a"] + 1
