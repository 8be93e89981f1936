"""The check-status strip and the share of proven minutes, in headless Chromium: the strip shows,
minute by minute, what ``minute_checks`` holds (read back from the page's elements), and the
``/api/checks`` answer counts it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import unavailable
from tests.dashboard.chromium import Chromium, chromium_binary
from tests.dashboard.helpers import ROOT, expected_rows, load, synthetic_trades

from tradepipe.core.checks import MinuteCheck, Status
from tradepipe.core.rows import minute_ms_of_text
from tradepipe.dashboard import DashboardServer, open_reader
from tradepipe.store import connect, parse_db_url
from tradepipe.store.checks import write_checks

READ_STRIP = (
    "Array.from(document.querySelectorAll('#checks-strip .checks-row .check'),"
    " (e) => [e.dataset.minute, e.dataset.status])"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        unavailable("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return binary


def record(url: str, verdicts: dict[str, Status]) -> None:
    conn = connect(parse_db_url(url))
    try:
        checks = [MinuteCheck("BTCUSDT", minute_ms_of_text(m), s) for m, s in verdicts.items()]
        write_checks(conn, checks, dt.datetime.now(dt.UTC))
    finally:
        conn.close()


async def test_strip_shows_each_minutes_check_and_the_header_the_proven_share(
    chromium: str, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/minutes.db"
    btc = synthetic_trades(20)
    load(db, btc)
    minutes = [r.timestamp for r in expected_rows(btc)]
    assert len(minutes) == 20
    missing = "2024-11-23 23:59:00"  # checked, no row: verify found the exchange had trades
    verdicts = dict.fromkeys(minutes[:15], Status.EXACT)
    verdicts[minutes[3]] = Status.HOLE
    verdicts[minutes[7]] = Status.MISMATCH
    verdicts[missing] = Status.MISSING
    record(db, verdicts)  # minutes[15:] stay unchecked
    want = [(m, verdicts[m].value if m in verdicts else "unchecked") for m in minutes]
    want.insert(0, (missing, "missing"))
    async with (
        DashboardServer(open_reader(db), "127.0.0.1:0") as server,
        Chromium.launch(tmp_path / "profile") as browser,
    ):
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}api/checks?symbol=BTCUSDT&last=60") as response,
        ):
            body = await response.json()
        assert response.status == 200
        assert list(zip(body["minutes"], body["status"], strict=True)) == want
        assert body["counts"] == {"exact": 13, "hole": 1, "mismatch": 1, "missing": 1,
                                  "unchecked": 5}  # fmt: skip
        assert body["proven"] == "0.6190"  # 13 of 21

        page = await browser.new_page()
        await page.goto(f"{server.url}?symbol=BTCUSDT&range=60&refresh=2")
        await page.wait_for(f"{READ_STRIP}.length === {len(want)}")
        assert [tuple(x) for x in await page.evaluate(READ_STRIP)] == want
        header = await page.evaluate("document.getElementById('checks-proven').textContent")
        assert header == "proven: 61.9% (13/21 minutes)"
        legend = await page.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll("
            "'#checks-strip .checks-legend > span'), (e) => [e.dataset.status, e.dataset.count]))"
        )
        assert legend == {"exact": "13", "hole": "1", "mismatch": "1", "missing": "1",
                          "unchecked": "5"}  # fmt: skip

        # a new verdict shows without touching the page
        record(db, dict.fromkeys(minutes[15:], Status.EXACT))
        await page.wait_for(
            "document.getElementById('checks-proven').textContent"
            " === 'proven: 85.7% (18/21 minutes)'",
            seconds=15,
        )
        strip = dict(tuple(x) for x in await page.evaluate(READ_STRIP))
        assert strip[minutes[19]] == "exact" and strip[minutes[3]] == "hole"
        shot = await page.screenshot(ROOT / "artifacts" / "dashboard-checks.png")
        assert shot.stat().st_size > 20_000
        assert page.errors == []
