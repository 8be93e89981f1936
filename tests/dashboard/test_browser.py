"""The dashboard page in headless Chromium: it loads cleanly, and what it plots is the database.

Values are read back from the charts themselves (each Plotly trace's ``x``, ``y`` and the exact
text it keeps in ``customdata``), not from our own JavaScript state. A screenshot is saved to
``artifacts/dashboard.png`` for a human to look at.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import unavailable
from tests.dashboard.chromium import Chromium, Page, chromium_binary
from tests.dashboard.helpers import (
    ROOT,
    THREE_SYMBOLS,
    expected_rows,
    load,
    synthetic_trades,
    trades_of,
)

from tradepipe.core import Row
from tradepipe.dashboard import DashboardServer, open_reader

ARTIFACTS = ROOT / "artifacts"
TALL = 3000  # px: a window that shows the whole page (the page draws the charts in view)
CHARTS = {
    "chart-counts": ("total_count_b", "total_count_s"),
    "chart-base": ("total_btc_b", "total_btc_s"),
    "chart-quote": ("total_usd_b", "total_usd_s"),
    "chart-avg": ("avg_b", "avg_s"),
    "chart-spread": ("spread",),
}
READ_TRACES = (
    f"Object.fromEntries({list(CHARTS)}.map((id) => [id,"
    " (document.getElementById(id).data || []).map("
    " (t) => ({meta: t.meta, type: t.type, x: t.x, y: t.y, customdata: t.customdata}))]))"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        unavailable("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return binary


def expected_traces(rows: list[Row]) -> dict[str, list[dict[str, Any]]]:
    """What each chart must plot for ``rows``: exact text in customdata, its number in y."""
    dicts = [r.as_dict() for r in rows]
    for d in dicts:
        b, s = d["avg_b"], d["avg_s"]
        d["spread"] = None if b is None or s is None else str(Decimal(str(b)) - Decimal(str(s)))
    x = [d["timestamp"] for d in dicts]
    out: dict[str, list[dict[str, Any]]] = {}
    for chart, columns in CHARTS.items():
        out[chart] = []
        for column in columns:
            values = [d[column] for d in dicts]
            out[chart].append(
                {
                    "meta": column,
                    "x": x,
                    "customdata": ["—" if v is None else v for v in values],
                    "y": [None if v is None else float(v) for v in values],
                }
            )
    return out


async def plotted(page: Page) -> dict[str, list[dict[str, Any]]]:
    traces = await page.evaluate(READ_TRACES)
    return {
        chart: [{k: t[k] for k in ("meta", "x", "customdata", "y")} for t in trace_list]
        for chart, trace_list in traces.items()
    }


async def test_dashboard_in_chromium(chromium: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/minutes.db"
    btc = synthetic_trades(90)
    others = trades_of(THREE_SYMBOLS)
    load(db, btc + others)
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        Chromium.launch(tmp_path / "profile") as browser,
    ):
        page = await browser.new_page(height=TALL)  # every chart in the window: all drawn
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=60&refresh=2")
        await page.wait_for("document.getElementById('chart-spread').data?.length === 1")

        # 1. What is plotted is the database's last hour of BTCUSDT, value for value.
        rows = expected_rows(btc)[-60:]
        assert await plotted(page) == expected_traces(rows)
        status = await page.evaluate("document.getElementById('status').textContent")
        assert status.startswith(f"BTCUSDT: 60 minutes, {rows[0].timestamp[:16]} → ")
        options = await page.evaluate(
            "Array.from(document.getElementById('symbol').options, (o) => o.value)"
        )
        assert options == ["BTCUSDT", "DOTUSDT", "ETHUSDT"]

        # 2. Live refresh: a new minute in the database appears without touching the page.
        later = synthetic_trades(
            2, start_ms=1_732_406_400_000 + 90 * 60_000, agg_start=btc[-1].agg_id + 1
        )
        load(db, later)
        newest = expected_rows(btc + later)[-1].timestamp
        await page.wait_for(
            f"document.getElementById('chart-counts').data[0].x.at(-1) === '{newest}'", seconds=10
        )
        assert await plotted(page) == expected_traces(expected_rows(btc + later)[-60:])

        # 3. Symbol selection.
        await page.evaluate(
            "(() => { const s = document.getElementById('symbol'); s.value = 'ETHUSDT';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        eth = [r for r in expected_rows(others) if r.symbol == "ETHUSDT"]
        await page.wait_for(
            f"document.getElementById('chart-avg').data[0].x.length === {len(eth)}"
            f" && document.getElementById('chart-avg').data[0].x[0] === '{eth[0].timestamp}'"
        )
        assert await plotted(page) == expected_traces(eth)

        # 4. Time-range selection: a custom UTC range, inclusive.
        await page.evaluate(
            "(() => { document.getElementById('symbol').value = 'BTCUSDT';"
            " document.getElementById('range').value = 'custom';"
            " document.getElementById('from').value = '2024-11-24T00:10';"
            " document.getElementById('to').value = '2024-11-24T00:19';"
            " document.getElementById('range').dispatchEvent(new Event('change')); })()"
        )
        await page.wait_for(
            "document.getElementById('chart-counts').data[0].x[0] === '2024-11-24 00:10:00'"
            " && document.getElementById('chart-counts').data[0].x.length === 10"
        )
        assert await plotted(page) == expected_traces(expected_rows(btc)[10:20])

        # Back to the hour view for the picture.
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=60&refresh=0")
        await page.wait_for("document.getElementById('chart-spread').data?.length === 1")
        shot = await page.screenshot(ARTIFACTS / "dashboard.png")
        assert shot.stat().st_size > 20_000
        assert page.errors == []


async def test_charts_below_the_window_are_drawn_when_scrolled_into_view(
    chromium: str, tmp_path: Path
) -> None:
    """A refresh draws the charts in the window at once; a chart below it is drawn when it
    scrolls into view, with the newest answer (also one that came while it waited)."""
    db = f"sqlite:///{tmp_path}/minutes.db"
    btc = synthetic_trades(90)
    load(db, btc)
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        Chromium.launch(tmp_path / "profile") as browser,
    ):
        page = await browser.new_page(height=1000)
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=60&refresh=2")
        await page.wait_for("window.tradepipe.renderMs !== null")
        drawn, deferred = await page.evaluate("[window.tradepipe.drawn, window.tradepipe.deferred]")
        # 1000 px show the order-flow chart and the analysis panel, the seed's charts are below
        assert drawn == ["chart-flow", "chart-analysis"]
        assert deferred == list(CHARTS)
        for chart in deferred:  # nothing drawn yet outside the window
            assert await page.evaluate(f"document.getElementById('{chart}').data") is None
        # a newer minute arrives while they wait; then the user scrolls down
        later = synthetic_trades(
            2, start_ms=1_732_406_400_000 + 90 * 60_000, agg_start=btc[-1].agg_id + 1
        )
        load(db, later)
        newest = expected_rows(btc + later)[-1].timestamp
        await page.wait_for(
            f"document.getElementById('chart-flow').data[0].x.at(-1) === '{newest}'", seconds=10
        )
        assert await page.evaluate("window.tradepipe.waiting()") == list(CHARTS)
        await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        await page.wait_for(
            " && ".join(
                f"document.getElementById('{chart}').data?.[0].x.at(-1) === '{newest}'"
                for chart in CHARTS
            )
        )
        assert await plotted(page) == expected_traces(expected_rows(btc + later)[-60:])
        assert page.errors == []
