"""Benchmark the analysis page: one symbol, 24 hours (1,440 minutes), local SQLite database,
headless Chromium, a 1400 x 1800 window; prints the time from a refresh's start (its three API
requests) until every chart in the window is drawn (the charts below it are drawn when they
scroll into view: which were drawn and which waited is printed too), then the time from
scrolling to the page's end until those are drawn, and the first load's time from navigation.

    .venv/bin/python -m bench.dashboard [--minutes 1440] [--repeat 5]

Uses the test suite's Chromium driver (tests/dashboard/chromium.py; `apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from tests.dashboard.chromium import Chromium, chromium_binary
from tests.dashboard.helpers import load, synthetic_trades

from tradepipe.dashboard import DashboardServer, open_reader


async def measure(minutes: int, repeat: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    db = f"sqlite:///{tmp}/minutes.db"
    trades = synthetic_trades(minutes)
    load(db, trades)
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        Chromium.launch(tmp / "profile") as browser,
    ):
        page = await browser.new_page(height=1800)
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=1440&refresh=0")
        done = "window.tradepipe.renderMs !== null && window.tradepipe.last?.count"
        await page.wait_for(done, seconds=60)
        first = await page.evaluate("performance.now()")
        count = await page.evaluate("window.tradepipe.last.count")
        times, fetches, scrolls = [], [], []
        for _ in range(repeat):
            await page.evaluate(
                "(() => { window.scrollTo(0, 0); window.tradepipe.renderMs = null;"
                " document.getElementById('range').dispatchEvent(new Event('change')); })()"
            )
            times.append(await page.wait_for("window.tradepipe.renderMs", seconds=60))
            fetches.append(await page.evaluate("window.tradepipe.fetchMs"))
            drawn, deferred = await page.evaluate(
                "[window.tradepipe.drawn ?? ['all'], window.tradepipe.deferred ?? []]"
            )
            if deferred:  # the charts below the window: scroll to the end, wait for them
                scrolls.append(
                    await page.evaluate(
                        "new Promise((done) => { const t = window.tradepipe;"
                        " const start = performance.now(); t.lateDrawnAt = null;"
                        " window.scrollTo(0, document.body.scrollHeight);"
                        " const poll = () => t.waiting().length === 0 && t.lateDrawnAt"
                        " ? done(t.lateDrawnAt - start) : setTimeout(poll, 5); poll(); })"
                    )
                )
        points = await page.evaluate(
            "document.querySelectorAll('#chart-analysis .scatterlayer .point').length"
        )
        assert page.errors == [], page.errors
    print(
        f"dashboard: {count} minutes of one symbol ({len(trades):,} trades), "
        f"refresh to drawn: median {statistics.median(times):.0f} ms, "
        f"best {min(times):.0f} ms, worst {max(times):.0f} ms over {repeat} (of which the API "
        f"requests: median {statistics.median(fetches):.0f} ms); "
        f"first load from navigation {first:.0f} ms"
    )
    print(f"  drawn at once: {', '.join(drawn)}; analysis markers drawn: {points:,}")
    if scrolls:
        print(
            f"  drawn when scrolled into view: {', '.join(deferred)}: from the scroll, "
            f"median {statistics.median(scrolls):.0f} ms, worst {max(scrolls):.0f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=1440)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if chromium_binary() is None:
        raise SystemExit("bench.dashboard: chromium is not installed (apt-get install chromium)")
    asyncio.run(measure(args.minutes, args.repeat))


if __name__ == "__main__":
    main()
