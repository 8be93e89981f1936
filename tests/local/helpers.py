"""Processes and data for the ``tradepipe run`` tests: the real CLI, real sockets, real files."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tradepipe.core import ROW_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "samples").glob("*.ndjson.gz"))
TRADEPIPE = [sys.executable, "-m", "tradepipe.cli"]


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def wait_line(self, needle: str, seconds: float = 60) -> str:
        async with asyncio.timeout(seconds):
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self.proc.returncode is not None:
                    raise AssertionError(f"exited {self.proc.returncode} before {needle!r}:\n"
                                         + "\n".join(self.lines[-30:]))  # fmt: skip
                await asyncio.sleep(0.05)

    async def exited(self, seconds: float = 60) -> int:
        """Wait for the process to end by itself; its exit status."""
        async with asyncio.timeout(seconds):
            code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self, sig: int = signal.SIGTERM, seconds: float = 60) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(seconds):
            code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return code


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace").rstrip("\n"))


@contextlib.asynccontextmanager
async def tradepipe(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Proc]:
    """``tradepipe ARGS`` with stdout and stderr merged into ``.lines``; killed if left running."""
    proc = await asyncio.create_subprocess_exec(
        *TRADEPIPE, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})}, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    p = Proc(proc)
    p._reader = asyncio.create_task(_collect(proc.stdout, p.lines))
    try:
        yield p
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        p._reader.cancel()


async def aggregate_csv(files: Sequence[Path | str]) -> list[tuple[str, ...]]:
    """``tradepipe aggregate FILES`` (the offline oracle) as rows of contract text."""
    proc = await asyncio.create_subprocess_exec(
        *TRADEPIPE, "aggregate", *map(str, files),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert tuple(rows[0]) == ROW_COLUMNS
    return [tuple(r) for r in rows[1:]]


def db_texts(path: Path) -> list[tuple[str, ...]]:
    """Every row of ``trade_minutes`` as contract text, through the store's own reader."""
    from tradepipe.store import connect, fetch_texts, parse_db_url

    conn = connect(parse_db_url(f"sqlite:///{path}"))
    try:
        return [tuple(r) for r in fetch_texts(conn)]
    finally:
        conn.close()


def trade_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as c:
            got = c.execute(
                "SELECT SUM(total_count_b + total_count_s) FROM trade_minutes"
            ).fetchone()
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    return int(got[0] or 0)
