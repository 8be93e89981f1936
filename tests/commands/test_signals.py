"""The one signal policy of the long-running commands (``tradepipe.commands.signals``), with
real processes receiving real signals.

Every command has its own SIGTERM test already (tests/producer/test_lifecycle.py,
tests/sink/test_sink_service.py, tests/local/test_run.py, tests/replay/test_cli.py,
tests/dashboard/test_command.py); here: SIGINT does the same as SIGTERM, a second signal while
stopping is ignored (the shutdown runs to its end), and no command installs handlers of its own.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest
from tests.dashboard.helpers import THREE_SYMBOLS, load, trades_of
from tests.local.helpers import tradepipe

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "daemon" / "tradepipe"

# a service in miniature: stop flag from the helper, then a shutdown that takes 1.5 s
SERVICE = """
import asyncio
from tradepipe.commands.signals import stop_on_signals

async def main() -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    print("ready", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    await asyncio.sleep(1.5)
    print("stopped", flush=True)
    return 0

raise SystemExit(asyncio.run(main()))
"""


async def _line(stream: asyncio.StreamReader, seconds: float = 30) -> str:
    return (await asyncio.wait_for(stream.readline(), seconds)).decode().strip()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGTERM, None),
        (signal.SIGINT, None),
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGTERM),
    ],
    ids=["term", "int", "term-then-int", "int-twice", "term-twice"],
)
async def test_a_signal_sets_the_stop_flag_and_a_second_one_is_ignored(
    first: signal.Signals, second: signal.Signals | None
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVICE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert await _line(proc.stdout) == "ready"
        proc.send_signal(first)
        assert await _line(proc.stdout) == "stopping"
        if second is not None:
            proc.send_signal(second)  # while the shutdown runs
        rest = (await asyncio.wait_for(proc.stdout.read(), 30)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rest.split() == ["stopped"], rest  # no KeyboardInterrupt, the shutdown not cut short


async def test_a_command_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    """Ctrl-C on a real command (the dashboard: no broker needed) is a clean stop, exit 0."""
    db = tmp_path / "m.db"
    load(f"sqlite:///{db}", trades_of(THREE_SYMBOLS))
    async with tradepipe("dashboard", "--db", f"sqlite:///{db}", "--listen", "127.0.0.1:0") as p:
        await p.wait_line("dashboard: http://")
        assert await p.stop(signal.SIGINT) == 0, p.lines
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in p.lines)


def test_no_module_installs_signal_handlers_but_the_helper() -> None:
    pattern = re.compile(r"add_signal_handler|signal\.signal\(")
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    )
    assert users == ["commands/signals.py"]
    for command in ("produce", "sink", "run", "replay", "dashboard"):
        text = (PACKAGE / "commands" / f"{command}.py").read_text(encoding="utf-8")
        assert "stop_on_signals(" in text, command
