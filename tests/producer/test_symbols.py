"""Symbols by rule: which exchangeInfo entries count, a start with no readable list (exit 1),
and a refresh that fails (the list is kept, counted)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import aiohttp

from tradepipe.config import Settings
from tradepipe.producer import Options, serve
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.rest import AggTradesClient
from tradepipe.producer.symbols import SymbolWatcher, select


def test_select_takes_trading_symbols_of_the_quote_assets_and_skips_junk() -> None:
    info: dict[str, Any] = {
        "symbols": [
            {"symbol": "BTCUSDT", "status": "TRADING", "quoteAsset": "USDT"},
            {"symbol": "ETHBTC", "status": "TRADING", "quoteAsset": "BTC"},
            {"symbol": "LUNAUSDT", "status": "BREAK", "quoteAsset": "USDT"},
            {"symbol": "bnbfdusd", "status": "TRADING", "quoteAsset": "FDUSD"},
            {"symbol": "BAD/NAME", "status": "TRADING", "quoteAsset": "USDT"},
            {"symbol": 7, "status": "TRADING"},
            "not an object",
        ]
    }
    assert select(info) == ["BNBFDUSD", "BTCUSDT", "ETHBTC"]
    assert select(info, ["usdt"]) == ["BTCUSDT"]
    assert select(info, ["USDT", "BTC"]) == ["BTCUSDT", "ETHBTC"]
    assert select({"symbols": []}) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_no_readable_symbol_list_at_start_exits_1(tmp_path: Path) -> None:
    port = _closed_port()
    settings = Settings().replace(
        feed={
            "symbols": ["*"], "rest_url": f"http://127.0.0.1:{port}",
            "ws_url": f"ws://127.0.0.1:{port}", "resume_timeout_seconds": 1.0,
            "state_path": str(tmp_path / "state.json"),
            "quarantine_path": str(tmp_path / "q.ndjson"),
        },
        metrics={"listen": "127.0.0.1:0"},
    )  # fmt: skip
    metrics = ProducerMetrics()
    status = await asyncio.wait_for(
        serve(settings, asyncio.Event(), Options(metrics=metrics, serve_metrics=False)), 30
    )
    assert status == 1
    failures = metrics.registry.get_sample_value("tradepipe_exchange_info_failures_total")
    assert failures is not None and failures >= 1


async def test_a_failed_refresh_keeps_the_symbols() -> None:
    metrics = ProducerMetrics()
    changes: list[tuple[str, list[str]]] = []

    async def listed(symbols: list[str]) -> None:
        changes.append(("listed", symbols))

    async with aiohttp.ClientSession() as http:
        client = AggTradesClient(f"http://127.0.0.1:{_closed_port()}", http, metrics, 6000)
        watcher = SymbolWatcher(
            client, [], 1.0, metrics, current=lambda: ["BTCUSDT", "ETHUSDT"], listed=listed,
            delisted=lambda symbols: changes.append(("delisted", symbols)),
        )  # fmt: skip
        await watcher.refresh()
    assert changes == []
    assert metrics.registry.get_sample_value("tradepipe_exchange_info_failures_total") == 1.0
    assert metrics.registry.get_sample_value("tradepipe_symbols_delisted_total") == 0.0
