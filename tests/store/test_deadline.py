"""``Store.upsert(..., deadline=...)`` against a server that accepts and never answers
(tests/store/silent.py): it raises DeadlineExceeded by the deadline, and never starts once the
deadline has passed."""

from __future__ import annotations

import time

import pytest
from tests.store.helpers import HAND
from tests.store.silent import Silent

from tradepipe.store import DeadlineExceeded, Store


def test_a_passed_deadline_never_reaches_the_server() -> None:
    with Silent("mute") as server:
        store = Store(f"mysql://u:pw@127.0.0.1:{server.port}/db")
        with pytest.raises(DeadlineExceeded, match="no time left"):
            store.upsert(HAND, deadline=time.monotonic() - 1)
        assert server.accepted == 0


def test_a_silent_server_fails_by_the_deadline() -> None:
    with Silent("mute") as server:
        store = Store(f"mysql://u:pw@127.0.0.1:{server.port}/db")
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="nothing committed") as info:
            store.upsert(HAND, deadline=started + 2.0)
        elapsed = time.monotonic() - started
        assert server.accepted == 1  # one attempt: no time was left for another
    assert 1.5 <= elapsed < 4.0, elapsed  # waited for the answer up to the deadline, not for ever
    assert "timed out" in str(info.value.__cause__)
