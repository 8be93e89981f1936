"""The dashboard's OpenAPI description (static/openapi.json, served at /openapi.json): a valid
OpenAPI 3.1 document, naming every route the server has, and every response of a fixed set of
requests (good, empty, bad, every endpoint) matches the schema of its status code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from tests.dashboard.helpers import load, synthetic_trades

from tradepipe.core import FLOW_COLUMNS, ROW_COLUMNS
from tradepipe.dashboard import DashboardServer, open_reader
from tradepipe.store import connect, parse_db_url
from tradepipe.store.series import SERIES

SPEC_FILE = Path(__file__).resolve().parents[2] / "daemon/tradepipe/dashboard/static/openapi.json"
REQUESTS = (
    "api/symbols",
    "api/minutes?symbol=BTCUSDT",
    "api/minutes?symbol=ETHUSDT&last=3",
    "api/minutes?symbol=NOPEUSDT",
    "api/minutes?symbol=BTCUSDT&last=0",
    "api/checks?symbol=BTCUSDT&last=30",
    "api/checks?symbol=NOPEUSDT",
    "api/checks?symbol=BTC-USDT",
    "api/series?symbol=BTCUSDT&last=30",
    "api/series?symbol=BTCUSDT&from=2030-01-01 00:00",
    "api/series?symbol=BTC-USDT",
    "api/analysis?symbol=BTCUSDT&last=60",
    "api/analysis?symbol=ETHUSDT&last=2",
    "api/analysis?symbol=BTCUSDT&from=2024-11-24 00:03&to=2024-11-24 00:02",
    "api/export?symbol=BTCUSDT&format=csv",
    "api/export?symbol=BTCUSDT&last=5&format=parquet",
    "api/export?symbol=BTCUSDT&format=xml",
    "healthz",
)


def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = msgspec.json.decode(SPEC_FILE.read_bytes())
    return loaded


def test_the_description_is_valid_openapi_and_matches_the_code() -> None:
    doc = spec()
    validate_spec(doc)  # type: ignore[arg-type]
    schemas = doc["components"]["schemas"]
    assert schemas["Minutes"]["properties"]["columns"]["required"] == [*ROW_COLUMNS[1:], "spread"]
    assert schemas["Series"]["properties"]["columns"]["required"] == ["timestamp", *SERIES]


def validate(doc: dict[str, Any], path: str, status: int, ctype: str, body: bytes) -> None:
    op = doc["paths"]["/" + path.split("?")[0]]["get"]
    response = op["responses"][str(status)]
    media = ctype.split(";")[0].strip()
    assert media in response["content"], (path, status, media)
    if media != "application/json":
        assert body  # a file or a text line
        return
    schema = {**response["content"][media]["schema"], "components": doc["components"]}
    OAS31Validator(schema).validate(msgspec.json.decode(body))


async def test_every_response_matches_the_description(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    btc = synthetic_trades(40)
    eth = [
        msgspec.structs.replace(t, buyer_is_maker=False)  # only buys: null sell averages
        for t in synthetic_trades(4, symbol="ETHUSDT", agg_start=9_000_000_000)
    ]
    load(db, btc + eth)
    conn = connect(parse_db_url(db))
    try:
        with conn.transaction():  # ETHUSDT's rows as from before migration 0003
            sets = ", ".join(f"{conn.quote(c)} = NULL" for c in FLOW_COLUMNS)
            conn.query(f"UPDATE trade_minutes SET {sets} WHERE symbol = 'ETHUSDT'")
    finally:
        conn.close()
    doc = spec()
    seen: set[tuple[str, int]] = set()
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(server.url + "openapi.json") as response:
            assert response.status == 200
            assert msgspec.json.decode(await response.read()) == doc  # the served one is the file
        routes = {
            r.resource.canonical  # type: ignore[union-attr]
            for r in server._runner.app.router.routes()  # type: ignore[union-attr]
            if r.method == "GET"
        }
        assert {p for p in routes if p.startswith(("/api/", "/healthz"))} == set(doc["paths"])
        for path in REQUESTS:
            async with session.get(server.url + path) as response:
                body = await response.read()
                validate(doc, path, response.status, response.headers["Content-Type"], body)
                seen.add((path.split("?")[0], response.status))
    assert {s for _, s in seen} == {200, 400}
    assert {p for p, _ in seen} == {p.lstrip("/") for p in doc["paths"]}
