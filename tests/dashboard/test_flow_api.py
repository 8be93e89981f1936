"""The analysis page's endpoints over a real server and database: /api/series, /api/analysis
(against a direct computation with the standard library's statistics) and /api/export (the
bytes `tradepipe export` writes)."""

from __future__ import annotations

import io
import math
import statistics
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pyarrow.parquet as pq
import pytest
from tests.dashboard.helpers import expected_rows, synthetic_trades
from tests.store.conftest import db_url

from tradepipe.cli import main
from tradepipe.core import Row
from tradepipe.dashboard import DashboardServer, open_reader
from tradepipe.store import MinuteReads, Store, parse_db_url

__all__ = ["db_url"]  # the fixture: a migrated SQLite file, or a MariaDB database
MIDNIGHT = 1_732_406_400_000
TRADES = synthetic_trades(40, start_ms=MIDNIGHT - 10 * 60_000)  # 23:50 .. 00:29
RANGE = "from=2024-11-23 23:55&to=2024-11-24 00:24"
FIRST, LAST = "2024-11-23 23:55:00", "2024-11-24 00:24:00"


async def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


@pytest.fixture
async def server(db_url: str) -> Any:
    Store(db_url).upsert(TRADES)
    async with DashboardServer(open_reader(db_url), "127.0.0.1:0") as srv:
        yield srv


def in_range(rows: list[Row]) -> list[Row]:
    return [r for r in rows if FIRST <= r.timestamp <= LAST]


def fisher_ci(r: float, n: int) -> tuple[float, float]:
    z, se = math.atanh(r), 1 / math.sqrt(n - 3)
    q = statistics.NormalDist().inv_cdf(0.975)
    return math.tanh(z - q * se), math.tanh(z + q * se)


def direct_panels(rows: list[Row]) -> dict[tuple[str, int], dict[str, Any]]:
    close = {r.timestamp: r.close for r in rows}
    ms = {r.timestamp: i for i, r in enumerate(rows)}
    out = {}
    for name in ("imbalance", "delta_quote", "spread"):
        for k in (1, 5):
            xs, ys = [], []
            for r in rows:
                later = [t for t, i in ms.items() if i == ms[r.timestamp] + k]
                # minutes are contiguous in this data set: t+k is k rows later
                if not later:
                    continue
                vol = r.total_usd_b + r.total_usd_s
                x = {
                    "imbalance": float((r.total_usd_b - r.total_usd_s) / vol),
                    "delta_quote": float(r.total_usd_b - r.total_usd_s),
                    "spread": None
                    if r.avg_b is None or r.avg_s is None
                    else float(r.avg_b - r.avg_s),
                }[name]
                if x is None:
                    continue
                xs.append(x)
                ys.append(float(close[later[0]] / r.close - 1))
            slope, intercept = statistics.linear_regression(xs, ys)
            corr = statistics.correlation(xs, ys)
            out[(name, k)] = {
                "n": len(xs), "slope": slope, "intercept": intercept, "r": corr,
                "ci": fisher_ci(corr, len(xs)), "x": xs, "y": ys,
            }  # fmt: skip
    return out


async def test_series_endpoint_is_the_stores_series(server: Any, db_url: str) -> None:
    status, body, _ = await get(f"{server.url}api/series?symbol=BTCUSDT&{RANGE}")
    assert status == 200
    payload = msgspec.json.decode(body)
    assert payload["count"] == 30 and payload["from"] == FIRST and payload["to"] == LAST
    reads = MinuteReads(parse_db_url(db_url))
    try:
        want = reads.series("BTCUSDT", FIRST, LAST)
    finally:
        reads.close()
    for name, values in payload["columns"].items():
        assert values == [w[name] for w in want], name


async def test_analysis_matches_a_direct_computation(server: Any) -> None:
    status, body, _ = await get(f"{server.url}api/analysis?symbol=BTCUSDT&{RANGE}")
    assert status == 200
    payload = msgspec.json.decode(body)
    rows = in_range(expected_rows(TRADES))
    assert payload["minutes"] == len(rows) == 30
    want = direct_panels(rows)
    assert [(p["predictor"], p["horizon"]) for p in payload["panels"]] == list(want)
    for p in payload["panels"]:
        w = want[(p["predictor"], p["horizon"])]
        assert p["n"] == w["n"] == 30 - p["horizon"]
        assert p["points"]["x"] == pytest.approx(w["x"], rel=1e-12)
        assert p["points"]["y"] == pytest.approx(w["y"], rel=1e-12)
        for key in ("slope", "intercept", "r"):
            assert p[key] == pytest.approx(w[key], rel=1e-9, abs=1e-15), (p["predictor"], key)
        assert (p["ci_low"], p["ci_high"]) == pytest.approx(w["ci"], rel=1e-9)
        assert p["ci_low"] < p["r"] < p["ci_high"]
        lo, hi = min(w["x"]), max(w["x"])
        assert p["line"]["x"] == pytest.approx([lo, hi])
        assert p["line"]["y"] == pytest.approx([w["intercept"] + w["slope"] * v for v in (lo, hi)])


async def test_a_range_too_short_to_fit_says_why(server: Any) -> None:
    url = f"{server.url}api/analysis?symbol=BTCUSDT&from=2024-11-24 00:00&to=2024-11-24 00:02"
    payload = msgspec.json.decode((await get(url))[1])
    five = [p for p in payload["panels"] if p["horizon"] == 5]
    assert all(p["n"] == 0 and p["r"] is None and p["reason"] for p in five)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_export_download_is_what_the_command_writes(
    server: Any, db_url: str, tmp_path: Path, fmt: str
) -> None:
    status, body, headers = await get(f"{server.url}api/export?symbol=BTCUSDT&{RANGE}&format={fmt}")
    assert status == 200
    assert (
        headers["Content-Disposition"]
        == f'attachment; filename="BTCUSDT_2024-11-23T2355_2024-11-24T0024.{fmt}"'
    )
    out = tmp_path / f"cli.{fmt}"
    argv = ["export", "--db", db_url, "--symbol", "BTCUSDT", "--since", FIRST]
    assert main([*argv, "--until", "2024-11-24 00:25", "--format", fmt, "--output", str(out)]) == 0
    if fmt == "csv":
        assert body == out.read_bytes()
        assert body.count(b"\n") == 31
    else:
        got = pq.read_table(io.BytesIO(body))
        assert got.equals(pq.read_table(out))
        assert got.num_rows == 30
        assert got.column("total_usd_b").to_pylist() == [
            r.total_usd_b for r in in_range(expected_rows(TRADES))
        ]
        assert all(isinstance(v, Decimal) for v in got.column("close").to_pylist())


async def test_export_needs_a_format(server: Any) -> None:
    status, body, _ = await get(f"{server.url}api/export?symbol=BTCUSDT&format=xlsx")
    assert status == 400 and b"format='xlsx'" in body
