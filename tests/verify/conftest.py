"""Fixtures: a migrated database of each dialect, and the emulator (tests/replay's fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.replay.conftest import real_files, real_tape, start_emulator
from tests.store.helpers import migrated

__all__ = ["real_files", "real_tape", "start_emulator"]


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated database URL: a SQLite file, or a throwaway MariaDB database."""
    if request.param == "sqlite":
        return migrated(f"sqlite:///{tmp_path}/minutes.db")
    return migrated(request.getfixturevalue("mysql_db"))
