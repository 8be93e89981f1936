"""``tradepipe dashboard --db URL``: the dashboard alone, as a process."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import aiohttp
from tests.dashboard.helpers import THREE_SYMBOLS, load, trades_of
from tests.local.helpers import tradepipe


async def test_serves_a_database_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    load(f"sqlite:///{db}", trades_of(THREE_SYMBOLS))
    async with tradepipe("dashboard", "--db", f"sqlite:///{db}", "--listen", "127.0.0.1:0") as p:
        line = await p.wait_line("dashboard: http://")
        match = re.search(r"(http://127\.0\.0\.1:\d+/) \(reading (.+)\)", line)
        assert match and match.group(2) == str(db)
        async with aiohttp.ClientSession() as session:
            async with session.get(match.group(1) + "api/symbols") as response:
                assert await response.json() == {"symbols": ["BTCUSDT", "DOTUSDT", "ETHUSDT"]}
            async with session.get(match.group(1) + "healthz") as response:
                assert response.status == 200
        assert await p.stop(signal.SIGTERM) == 0


async def test_unusable_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    for args, message in [
        (["--db", f"sqlite:///{tmp_path}/absent.db"], "does not exist"),
        (["--db", "postgres://h/db"], "unsupported database URL scheme"),
        (["--db", "sqlite:///x.db", "--listen", "nowhere"], "nowhere"),
    ]:
        async with tradepipe("dashboard", *args) as p:
            assert await p.exited(30) == 2, p.lines
        assert any(message in line for line in p.lines), (args, p.lines)
        assert not any("Traceback" in line for line in p.lines), p.lines
