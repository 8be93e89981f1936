"""The analysis page in headless Chromium: the order-flow chart and the analysis panel plot
what the database holds, read back from the Plotly traces themselves; several symbols; the
download links fetch the range's CSV and Parquet."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tests.dashboard.chromium import Chromium
from tests.dashboard.helpers import THREE_SYMBOLS, expected_rows, load, synthetic_trades, trades_of
from tests.dashboard.test_browser import ARTIFACTS, TALL, chromium, expected_traces, plotted
from tests.dashboard.test_flow_api import direct_panels

from tradepipe.core import Row
from tradepipe.dashboard import DashboardServer, open_reader

__all__ = ["chromium"]  # the fixture: the browser binary, or the missing-component policy
MIDNIGHT = 1_732_406_400_000
READ = (
    "Object.fromEntries(['chart-flow', 'chart-analysis'].map((id) => [id,"
    " (document.getElementById(id).data || []).map((t) => ({meta: t.meta, type: t.type,"
    " x: t.x, y: t.y, open: t.open, high: t.high, low: t.low, close: t.close,"
    " customdata: t.customdata}))]))"
)


def by_meta(traces: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["meta"]: t for t in traces}


def check_flow(flow: dict[str, dict[str, Any]], rows: list[Row]) -> None:
    x = [r.timestamp for r in rows]
    ohlc = flow["ohlc"]
    assert ohlc["type"] == "candlestick" and ohlc["x"] == x
    for field in ("open", "high", "low", "close"):
        assert ohlc[field] == [float(getattr(r, field)) for r in rows], field
    for side in ("b", "s"):
        volume = flow[f"total_usd_{side}"]
        assert volume["customdata"] == [r.as_dict()[f"total_usd_{side}"] for r in rows]
        assert volume["y"] == [float(getattr(r, f"total_usd_{side}")) for r in rows]
    deltas = [r.total_usd_b - r.total_usd_s for r in rows]
    assert [Decimal(v) for v in flow["delta_quote"]["customdata"]] == deltas
    assert flow["delta_quote"]["y"] == [float(d) for d in deltas]
    day: dict[str, Decimal] = {}
    running, cvd_day, cvd_range = Decimal(0), [], []
    for r, d in zip(rows, deltas, strict=True):
        day[r.timestamp[:10]] = day.get(r.timestamp[:10], Decimal(0)) + d
        running += d
        cvd_day.append(day[r.timestamp[:10]])
        cvd_range.append(running)
    assert [Decimal(v) for v in flow["cvd_day_quote"]["customdata"]] == cvd_day
    assert [Decimal(v) for v in flow["cvd_range_quote"]["customdata"]] == cvd_range


def check_analysis(analysis: dict[str, dict[str, Any]], rows: list[Row]) -> None:
    for (name, k), want in direct_panels(rows).items():
        points, line = analysis[f"points:{name}:{k}"], analysis[f"line:{name}:{k}"]
        assert len(points["x"]) == want["n"]
        assert all(
            abs(a - b) <= 1e-12 * max(1, abs(b))
            for a, b in zip(points["x"], want["x"], strict=True)
        )
        assert all(
            abs(a - b) <= 1e-12 * max(1, abs(b))
            for a, b in zip(points["y"], want["y"], strict=True)
        )
        fitted = [want["intercept"] + want["slope"] * v for v in (min(want["x"]), max(want["x"]))]
        assert all(
            abs(a - b) <= 1e-9 * max(1e-6, abs(b)) for a, b in zip(line["y"], fitted, strict=True)
        )


async def test_analysis_page_in_chromium(chromium: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/minutes.db"
    btc = synthetic_trades(40, start_ms=MIDNIGHT - 10 * 60_000)  # 23:50 .. 00:29, over midnight
    eth = synthetic_trades(
        40, symbol="ETHUSDT", start_ms=MIDNIGHT - 10 * 60_000, agg_start=9 * 10**9
    )
    others = [t for t in trades_of(THREE_SYMBOLS) if t.symbol == "DOTUSDT"]
    load(db, btc + eth + others)
    rows = expected_rows(btc)  # the last hour holds all 40 minutes
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        Chromium.launch(tmp_path / "profile") as browser,
    ):
        page = await browser.new_page(height=1800)
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=60&refresh=0&compare=ETHUSDT")
        await page.wait_for(
            "document.getElementById('chart-analysis').data?.length === 12"
            " && document.getElementById('chart-flow').data?.length === 7"
        )
        traces = await page.evaluate(READ)
        flow, analysis = by_meta(traces["chart-flow"]), by_meta(traces["chart-analysis"])
        check_flow(flow, rows)
        check_analysis(analysis, rows)
        # several symbols: ETHUSDT's range CVD over the same minutes, on the same chart
        eth_rows = [r for r in expected_rows(eth) if rows[0].timestamp <= r.timestamp]
        running, want = Decimal(0), []
        for r in eth_rows:
            running += r.total_usd_b - r.total_usd_s
            want.append(running)
        compare = flow["cvd_range_quote:ETHUSDT"]
        assert compare["x"] == [r.timestamp for r in eth_rows]
        assert [Decimal(v) for v in compare["customdata"]] == want
        # the table says the same r as the fit
        table = await page.evaluate(
            "Array.from(document.querySelectorAll('#analysis-table tbody tr'),"
            " (tr) => [tr.dataset.key, tr.children[2].textContent, tr.children[4].textContent])"
        )
        panels = direct_panels(rows)
        assert [t[0] for t in table] == [f"{n}:{k}" for n, k in panels]
        for key, n, r in table:
            name, k = key.split(":")
            assert int(n) == panels[(name, int(k))]["n"]
            assert float(r) == float(f"{panels[(name, int(k))]['r']:.3g}")
        # the downloads fetch the plotted range
        for fmt in ("csv", "parquet"):
            href = await page.evaluate(f"document.getElementById('download-{fmt}').href")
            body = await page.evaluate(
                f"fetch({href!r}).then((r) => r.arrayBuffer())"
                ".then((b) => Array.from(new Uint8Array(b)))"
            )
            data = bytes(body)
            if fmt == "csv":
                lines = data.decode().splitlines()
                assert [line.split(",")[1] for line in lines[1:]] == [r.timestamp for r in rows]
            else:
                table_ = pq.read_table(io.BytesIO(data))
                assert table_.column("close").to_pylist() == [r.close for r in rows]
        # the check-status strip and the proven share sit beside the analysis page
        assert await page.evaluate(
            "!!document.getElementById('checks-strip')"
            " && !!document.getElementById('checks-proven')"
        )
        # every marker is drawn at 40 minutes (a panel draws a sample above 480 points)
        drawn = await page.evaluate(
            "document.querySelectorAll('#chart-analysis .scatterlayer .point').length"
        )
        assert drawn == sum(want["n"] for want in panels.values())
        # the charts below the window are drawn once scrolled to (for the picture)
        await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        await page.wait_for("window.tradepipe.waiting().length === 0")
        await page.evaluate("window.scrollTo(0, 0)")
        shot = await page.screenshot(ARTIFACTS / "dashboard-orderflow.png")
        assert shot.stat().st_size > 20_000
        assert page.errors == []


async def test_a_long_range_draws_bars_as_step_areas_of_the_same_values(
    chromium: str, tmp_path: Path
) -> None:
    """Above 150 minutes the bar charts (the seed's and the flow chart's volume) are drawn as
    step areas, one SVG path per series: still every minute's exact value, read back."""
    db = f"sqlite:///{tmp_path}/minutes.db"
    btc = synthetic_trades(200, start_ms=MIDNIGHT - 100 * 60_000)
    load(db, btc)
    rows = expected_rows(btc)
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        Chromium.launch(tmp_path / "profile") as browser,
    ):
        page = await browser.new_page(height=TALL)
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=360&refresh=0")
        await page.wait_for("window.tradepipe.renderMs !== null && window.tradepipe.last?.count")
        assert await page.evaluate("window.tradepipe.deferred") == []
        flow = by_meta((await page.evaluate(READ))["chart-flow"])
        check_flow(flow, rows)
        assert [flow[f"total_usd_{side}"]["type"] for side in "bs"] == ["scatter", "scatter"]
        assert await plotted(page) == expected_traces(rows)
        types = await page.evaluate(
            "['chart-counts', 'chart-base', 'chart-quote', 'chart-spread'].flatMap((id) =>"
            " document.getElementById(id).data.map((t) => [t.type, t.fill, t.line.shape]))"
        )
        assert types == [["scatter", "tozeroy", "hvh"]] * 7
        # one path per series, not one per bar: the seed's charts draw no bar at all
        assert (
            await page.evaluate("document.querySelectorAll('main .chart .bars .point').length")
            == 200
        )
        assert page.errors == []
