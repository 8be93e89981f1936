"""The API's response bytes for a fixed data set, on SQLite and MySQL, against a recording.

``api_recorded.json`` holds every response (status and body, byte for byte) that the dashboard
answered for :func:`data_set` before it read through ``tradepipe.store`` (issue #13 item 3,
recorded with the former ``dashboard/queries.py``): the redesign must not change one byte, on
either dialect (the order-flow columns of issue #17, added since, are checked present and then
set aside). The data set has both sides, an empty side (``null`` averages), two symbols,
and ranges that cut, cover and miss the rows. Regenerate only for a deliberate API change:
``python -m tests.dashboard.test_api_bytes sqlite:///NEW.db`` rewrites the file.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import msgspec
import pytest
from tests.dashboard.helpers import load, synthetic_trades

from tradepipe.core import FLOW_COLUMNS, Trade
from tradepipe.dashboard import DashboardServer, open_reader

RECORDED = Path(__file__).with_name("api_recorded.json")
QUERIES = (
    "api/symbols",
    "api/minutes?symbol=BTCUSDT",
    "api/minutes?symbol=btcusdt&last=5",
    "api/minutes?symbol=BTCUSDT&last=20000",
    "api/minutes?symbol=BTCUSDT&from=2024-11-24 00:03&to=2024-11-24T00:09",
    "api/minutes?symbol=BTCUSDT&from=2024-11-24 00:25",
    "api/minutes?symbol=BTCUSDT&to=2024-11-24 00:02:59",
    "api/minutes?symbol=BTCUSDT&from=2030-01-01 00:00",
    "api/minutes?symbol=ETHUSDT&last=3",
    "api/minutes?symbol=NOPEUSDT",
    "api/minutes?symbol=BTCUSDT&last=0",
    "api/minutes?symbol=BTC-USDT",
    "api/minutes?symbol=BTCUSDT&from=2024-11-24 01:00&to=2024-11-24 00:00",
)


def data_set() -> list[Trade]:
    """30 minutes of BTCUSDT, and 4 of ETHUSDT whose trades are all buys (sells empty)."""
    btc = synthetic_trades(30, start_ms=1_732_406_400_000)
    eth = [
        msgspec.structs.replace(t, buyer_is_maker=False)
        for t in synthetic_trades(4, symbol="ETHUSDT", agg_start=9_000_000_000)
    ]
    return btc + eth


async def responses(db_url: str) -> dict[str, list[object]]:
    """query -> [status, body text] for every query of :data:`QUERIES`."""
    out: dict[str, list[object]] = {}
    async with (
        DashboardServer(open_reader(db_url), "127.0.0.1:0") as server,
        aiohttp.ClientSession() as session,
    ):
        for query in QUERIES:
            async with session.get(server.url + query) as response:
                out[query] = [response.status, (await response.read()).decode()]
    return out


def seed_part(answer: list[object]) -> list[object]:
    """The answer without the order-flow columns (added after the recording, issue #17: each
    must be there, and the rest must not have changed by one byte)."""
    status, body = answer
    assert isinstance(body, str)
    payload = msgspec.json.decode(body)
    if not isinstance(payload, dict) or "columns" not in payload:
        return answer
    columns = payload["columns"]
    for name in FLOW_COLUMNS:
        assert len(columns.pop(name)) == payload["count"], name
    return [status, msgspec.json.encode(payload).decode()]


async def check(db_url: str) -> None:
    load(db_url, data_set())
    recorded = msgspec.json.decode(RECORDED.read_bytes())
    got = await responses(db_url)
    assert list(got) == list(recorded)
    for query, answer in got.items():
        assert seed_part(answer) == recorded[query], query
    assert got["api/minutes?symbol=ETHUSDT&last=3"][1].count('"avg_s":[null,null,null]') == 1


async def test_responses_are_byte_identical_to_the_recording_sqlite(tmp_path: Path) -> None:
    await check(f"sqlite:///{tmp_path}/t.db")


@pytest.mark.mysql
async def test_responses_are_byte_identical_to_the_recording_mysql(mysql_db: str) -> None:
    await check(mysql_db)


if __name__ == "__main__":  # regenerate (see the module docstring)
    load(sys.argv[1], data_set())
    answers = asyncio.run(responses(sys.argv[1]))
    recording = msgspec.json.format(msgspec.json.encode(answers), indent=2)
    RECORDED.write_bytes(recording + b"\n")
