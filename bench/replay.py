"""How fast ``tradepipe replay --speed 0`` can push trades to one client (not a test).

Starts the emulator as a subprocess on the shipped sample (or FILE...), connects one websockets
client to the combined stream of every symbol, and reports trades/s from subscription to the
last trade, plus the emulator's peak RSS.

    .venv/bin/python bench/replay.py [FILE...]
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

from tradepipe.replay import load_tape

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(files: list[str]) -> None:
    tape = load_tape(files)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradepipe.cli", "replay", "--port", "0", "--speed", "0", *files,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    match = re.search(r"ws://\S+", line)
    assert match, line
    streams = "/".join(s.lower() + "@aggTrade" for s in tape.symbols)
    try:
        async with connect(f"{match.group(0)}/stream?streams={streams}", max_size=None) as ws:
            started = time.perf_counter()
            n = 0
            while n < len(tape.trades):
                await ws.recv()
                n += 1
            elapsed = time.perf_counter() - started
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    print(
        f"{n} trades in {elapsed:.2f} s: {n / elapsed:,.0f} trades/s to one client; "
        f"emulator peak RSS {rss:.0f} MB"
    )


if __name__ == "__main__":
    args = sys.argv[1:] or [str(p) for p in sorted((ROOT / "samples").glob("*.ndjson.gz"))]
    asyncio.run(main(args))
