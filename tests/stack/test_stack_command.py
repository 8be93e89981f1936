"""``scripts/stack`` itself: up/status/down, holds, and no server left behind.

A second stack in a temporary ``STACK_DIR`` on a free port, beside the one the other tests use,
with only its S3 server (moto starts in about a second; Kafka and MariaDB are stopped, killed
and restarted through ``stack_control`` by tests/smoke/test_smoke_faults.py and the fault
tests). A server is found the way a later run of the script finds it: a process whose
environment carries mirakuru's marker variable, here also running in the component's folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = ROOT / "scripts" / "stack"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = (tmp_path / "stack").resolve()
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPIPE_TEST_")}
        self.env.update(
            STACK_DIR=str(self.dir), STACK_S3_PORT=str(self.port), STACK_COMPONENTS="s3",
            STACK_TIMEOUT="60",
        )  # fmt: skip

    def run(
        self, *args: str, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(STACK_SCRIPT), *args], env={**self.env, **(extra or {})},
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == 0, f"`stack {' '.join(args)}` exited {out.returncode}:\n{out}"
        return out.stdout

    def servers(self) -> list[int]:
        """Live processes started by this stack (marker variable set, cwd in its folder)."""
        found = []
        for proc in psutil.process_iter(["environ", "cwd", "status"], ad_value=None):
            marker = (proc.info["environ"] or {}).get("mirakuru_uuid", "")
            cwd = proc.info["cwd"] or ""
            if (
                marker.startswith("tradepipe-stack s3 ")
                and cwd.startswith(str(self.dir))
                and proc.info["status"] != psutil.STATUS_ZOMBIE
            ):
                found.append(proc.pid)
        return found

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    st = Stack(tmp_path)
    try:
        yield st
    finally:
        st.run("down")
        left = st.servers()
        for pid in left:  # never leave one behind, even when the script failed to stop it
            psutil.Process(pid).kill()
        assert left == [], "scripts/stack down left a server running"


def test_up_status_down_leaves_nothing_behind(stack: Stack) -> None:
    out = stack.ok("up", "--fresh")
    assert "s3: started pid" in out and "created bucket" in out
    env = (stack.dir / "env").read_text()
    assert f"TRADEPIPE_TEST_S3_ENDPOINT=http://127.0.0.1:{stack.port}" in env
    (pid,) = stack.servers()
    status = stack.ok("status", "s3")
    assert f"s3     ready     pid {pid}  127.0.0.1:{stack.port}" in status

    # A second `up` keeps the running server (no second process, same pid).
    stack.ok("up")
    assert stack.servers() == [pid]

    assert f"s3: stopped pid {pid}" in stack.ok("down")
    assert stack.servers() == [] and not stack.answers()
    assert not (stack.dir / "env").exists()
    stopped = stack.run("status", "s3")
    assert stopped.returncode == 3 and "s3     stopped" in stopped.stdout


def test_stop_kill_and_start_again_on_the_same_port(stack: Stack) -> None:
    stack.ok("up")
    (first,) = stack.servers()
    assert f"stopped pid {first} (SIGKILL)" in stack.ok("stop", "s3", "--kill")
    assert stack.servers() == [] and not stack.answers()
    stack.ok("start", "s3")
    (second,) = stack.servers()
    assert second != first and stack.answers()


def test_a_hold_whose_owner_was_killed_does_not_keep_the_stack(stack: Stack) -> None:
    """`make test` holds the stack with its shell's pid; a second run's `down --release` leaves
    it up while that shell lives, and stops it once the shell was killed (no trap ran)."""
    owner = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
    try:
        stack.ok("up", "--hold", "make-a", "--hold-pid", str(owner.pid))
        stack.ok("up", "--hold", "make-b", "--hold-pid", str(os.getpid()))
        kept = stack.ok("down", "--release", "make-b")
        assert f"still held by make-a ({owner.pid})" in kept
        assert len(stack.servers()) == 1
    finally:
        owner.kill()
        owner.wait()
    stack.ok("up", "--hold", "make-c", "--hold-pid", str(os.getpid()))
    assert "s3: stopped pid" in stack.ok("down", "--release", "make-c")
    assert stack.servers() == [] and not stack.answers()
    assert not (stack.dir / "holds").exists()


def test_a_port_taken_by_someone_else_is_an_error_and_starts_nothing(stack: Stack) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", stack.port))
        other.listen()
        out = stack.run("up")
    assert out.returncode == 1
    assert f"s3: port {stack.port} is already in use by a process this script did not start" in (
        out.stderr
    )
    assert stack.servers() == []


def test_a_server_that_exits_before_it_is_ready_is_reported_with_its_log(
    stack: Stack, tmp_path: Path
) -> None:
    broken = tmp_path / "moto_server"
    broken.write_text("#!/bin/sh\necho 'cannot start: simulated'\nexit 3\n")
    broken.chmod(0o755)
    started = time.monotonic()
    out = stack.run("up", extra={"STACK_MOTO_SERVER": str(broken)})
    assert out.returncode == 1
    assert "s3: the server exited with status 3 before it was ready" in out.stderr
    assert "cannot start: simulated" in out.stderr  # the log's last lines
    assert time.monotonic() - started < 30, "an exit is noticed at once, not at the timeout"
    assert stack.servers() == []
