"""The pipeline's daemons as separate processes, supervised the way systemd runs them.

A :class:`Service` is one ``tradepipe <command>`` process: stdout and stderr go to a log file
(JSON lines for ``produce`` and ``sink``), read back to wait for an event (``ready``,
``sink_started``) or a printed line (``listening ws://``). With ``restart=True`` it behaves like
``Restart=on-failure`` + ``RestartSec``: an exit that is not a clean 0 (a crash, SIGKILL) starts
a new process after ``restart_seconds``; every start and exit is kept for the test's report.

Nothing here is specific to one test; ``bench/soak.py`` drives the same classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRADEPIPE = [sys.executable, "-m", "tradepipe.cli"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Incarnation:
    pid: int
    started: float
    log_offset: int  # where this process's output starts in the log file
    exit_code: int | None = None


@dataclass
class Service:
    name: str
    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    restart: bool = True
    restart_seconds: float = 0.5
    runs: list[Incarnation] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _watcher: asyncio.Task[None] | None = None
    _stopping: bool = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._stopping = False
        await self._spawn()

    async def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                *TRADEPIPE, *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env}, cwd=ROOT,
            )  # fmt: skip
        self.runs.append(Incarnation(self._proc.pid, time.monotonic(), offset))
        self._watcher = asyncio.create_task(self._watch(self._proc), name=f"watch-{self.name}")

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self.runs[-1].exit_code = code
        if self._stopping or not self.restart or code == 0:
            return
        await asyncio.sleep(self.restart_seconds)  # systemd's RestartSec
        if not self._stopping:
            await self._spawn()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def restarts(self) -> int:
        return len(self.runs) - 1

    def kill(self) -> int:
        """SIGKILL the running process (the supervisor restarts it); returns its pid."""
        pid = self.pid
        if pid is None:
            raise AssertionError(f"{self.name} is not running:\n{self.tail()}")
        os.kill(pid, signal.SIGKILL)
        return pid

    async def wait_restarted(self, after: int, seconds: float = 30) -> None:
        """Until a process newer than incarnation ``after`` runs."""
        async with asyncio.timeout(seconds):
            while len(self.runs) <= after or self.pid is None:  # noqa: ASYNC110 -- a child
                await asyncio.sleep(0.05)

    async def stop(self, seconds: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``seconds``); returns the exit status."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(seconds):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        return proc.returncode

    # ------------------------------------------------------------------ output

    def output(self, since: int = 0) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def events(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """JSON log lines whose ``msg`` is ``name``."""
        out = []
        for line in self.output(since).splitlines():
            if f'"{name}"' not in line or not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if obj.get("msg") == name:
                    out.append(obj)
        return out

    async def wait_for(self, predicate: str, seconds: float = 60, *, event: bool = True) -> Any:
        """The first JSON event named ``predicate`` (or, ``event=False``, the first output line
        containing it) written by the current process."""
        since = self.runs[-1].log_offset
        async with asyncio.timeout(seconds):
            while True:
                if event:
                    found = self.events(predicate, since)
                    if found:
                        return found[0]
                else:
                    for line in self.output(since).splitlines():
                        if predicate in line:
                            return line
                proc = self._proc
                if proc is not None and proc.returncode is not None and not self.restart:
                    raise AssertionError(
                        f"{self.name} exited {proc.returncode} before {predicate!r}:\n"
                        + self.tail()
                    )
                await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ resources

    def rss_bytes(self) -> int | None:
        pid = self.pid
        return None if pid is None else rss_of(pid)


def rss_of(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes (``VmRSS``), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None
