"""The pipeline's daemons as separate processes, supervised the way systemd runs them.

A :class:`Service` is one ``tradepipe <command>`` process, started, killed and stopped by
mirakuru's :class:`~mirakuru.SimpleExecutor` (as ``scripts/stack`` starts its servers): its own
session, marked with mirakuru's variable so that a test that dies leaves nothing behind
(mirakuru kills what it started when the interpreter exits), and stopped with SIGTERM then
SIGKILL of the whole group after the stop timeout. stdout and stderr go to a log file (JSON
lines for ``produce`` and ``sink``), read back to wait for an event (``ready``,
``sink_started``) or a printed line (``listening ws://``). With ``restart=True`` it behaves like
``Restart=on-failure`` + ``RestartSec``: an exit that is not a clean 0 (a crash, SIGKILL) starts
a new process after ``restart_seconds``; every start and exit is kept for the test's report.
mirakuru's calls block, so the waits run in a thread and the event loop keeps serving.

Nothing here is specific to one test; ``bench/soak.py`` drives the same classes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from mirakuru import SimpleExecutor
from mirakuru.base import ENV_UUID, cleanup_subprocesses
from mirakuru.exceptions import ProcessFinishedWithError

TRADEPIPE = [sys.executable, "-m", "tradepipe.cli"]
ROOT = Path(__file__).resolve().parents[2]


@atexit.register
def _kill_leftovers() -> None:
    """At exit, SIGKILL whatever this interpreter's executors started and left running.

    It replaces mirakuru's own hook, which kills every process whose marker merely *contains*
    this pid (``"412"`` would hit another test run's ``"14123:..."`` services); a marker is
    ``"<pid of the starting interpreter>:<uuid>"``, so the prefix is exact.
    """
    prefix = f"{os.getpid()}:"
    for proc in psutil.process_iter(["environ"], ad_value=None):
        if (proc.info["environ"] or {}).get(ENV_UUID, "").startswith(prefix):
            with contextlib.suppress(psutil.Error):
                proc.kill()


atexit.unregister(cleanup_subprocesses)


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
    _executor: SimpleExecutor | None = None
    _proc: subprocess.Popen[str] | None = None  # the current process, also once it has exited
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
            executor = SimpleExecutor(
                [*TRADEPIPE, *self.args], cwd=str(ROOT),
                envvars={"PYTHONUNBUFFERED": "1", **self.env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            executor.start()
        assert executor.process is not None
        self._executor, self._proc = executor, executor.process
        self.runs.append(Incarnation(executor.process.pid, time.monotonic(), offset))
        self._watcher = asyncio.create_task(
            self._watch(executor.process), name=f"watch-{self.name}"
        )

    async def _watch(self, proc: subprocess.Popen[str]) -> None:
        while (code := proc.poll()) is None:  # noqa: ASYNC110 -- a child of another executor
            await asyncio.sleep(0.05)
        self.runs[-1].exit_code = code
        if self._stopping or not self.restart or code == 0:
            return
        await asyncio.sleep(self.restart_seconds)  # systemd's RestartSec
        if not self._stopping:
            await self._spawn()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def restarts(self) -> int:
        return len(self.runs) - 1

    def kill(self) -> int:
        """SIGKILL the running process (the supervisor restarts it); returns its pid."""
        pid, executor = self.pid, self._executor
        if pid is None or executor is None:
            raise AssertionError(f"{self.name} is not running:\n{self.tail()}")
        executor.kill()  # SIGKILL to its process group, reaped at once
        return pid

    async def wait_restarted(self, after: int, seconds: float = 30) -> None:
        """Until a process newer than incarnation ``after`` runs."""
        async with asyncio.timeout(seconds):
            while len(self.runs) <= after or self.pid is None:  # noqa: ASYNC110 -- a child
                await asyncio.sleep(0.05)

    async def stop(self, seconds: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``seconds``); returns the exit status."""
        self._stopping = True
        proc, executor = self._proc, self._executor
        if proc is None or executor is None:
            return None
        if proc.poll() is None:
            # mirakuru's stop waits the executor's timeout, then SIGKILLs the group; it has no
            # per-call timeout, and the start (which would use it too) is long done.
            executor._timeout = seconds
            with contextlib.suppress(ProcessFinishedWithError):  # the status is returned
                await asyncio.to_thread(executor.stop)
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
