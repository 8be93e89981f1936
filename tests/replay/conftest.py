"""Fixtures for the emulator's tests: real sockets on 127.0.0.1:0, real clients.

- ``real_files``: the real recorded BTCUSDT + ETHUSDT streams from ``../shared/data/binance/``
  (tests needing them skip, naming the path, where the data is absent).
- ``real_tape``: those files loaded as a tape.
- ``start_emulator`` (function): ``async with start_emulator(tape, speed=0, ...) as emu`` runs an
  :class:`~tradepipe.replay.Emulator` on a free port and stops it afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import unavailable

from tradepipe.replay import Emulator, ReplayOptions, Tape, load_tape

from .helpers import REAL_FILES, StartEmulator


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    missing = [str(p) for p in REAL_FILES if not p.exists()]
    if missing:
        unavailable(f"real recorded data not found: {', '.join(missing)}")
    return REAL_FILES


@pytest.fixture(scope="session")
def real_tape(real_files: list[Path]) -> Tape:
    return load_tape([str(p) for p in real_files])


@pytest.fixture
def start_emulator() -> StartEmulator:
    @contextlib.asynccontextmanager
    async def start(tape: Tape, **options: Any) -> AsyncIterator[Emulator]:
        options.setdefault("port", 0)
        lines: list[str] = []
        async with Emulator(tape, ReplayOptions(**options), log=lines.append) as emu:
            emu.log_lines = lines  # type: ignore[attr-defined]
            yield emu

    return start
