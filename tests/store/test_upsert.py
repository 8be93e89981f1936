"""The idempotent upsert against real databases: every way trades can arrive converges to the
rows of aggregating the union of distinct trades once."""

from __future__ import annotations

import random
import threading

import pytest
from tests.store.helpers import ETH_FILE, HAND, HAND_ROWS, expected, migrated, real_trades, stored

from tradepipe.store import Store, connect, parse_db_url, upsert_trades


def test_hand_checked_rows(db_url: str) -> None:
    result = Store(db_url).upsert(HAND)
    assert (result.trades, result.added, result.rows) == (4, 4, 2)
    assert stored(db_url) == HAND_ROWS


def test_duplicate_delivery_changes_nothing(db_url: str) -> None:
    store = Store(db_url)
    trades = real_trades()
    store.upsert(trades)
    first = stored(db_url)
    again = store.upsert(trades)
    assert (again.added, again.rows, again.duplicates) == (0, 0, len(trades))
    assert stored(db_url) == first == expected(trades)


def test_overlapping_batches(db_url: str) -> None:
    trades = real_trades()
    store = Store(db_url)
    store.upsert(trades[:700])
    result = store.upsert(trades[400:])  # 300 trades already stored
    assert result.added == len(trades) - 700
    assert stored(db_url) == expected(trades)


def test_minute_split_in_three_delivered_in_reverse(db_url: str) -> None:
    trades = real_trades()
    minute = [t for t in trades if t.time_ms // 60_000 == trades[0].time_ms // 60_000]
    a, b, c = (
        minute[: len(minute) // 3],
        minute[len(minute) // 3 : 2 * len(minute) // 3],
        minute[2 * len(minute) // 3 :],
    )
    store = Store(db_url)
    for part in (c, b, a):
        store.upsert(part)
    assert stored(db_url) == expected(minute)
    assert len(stored(db_url)) == 1


def test_random_chunks_any_order_with_repeats(db_url: str) -> None:
    """Two symbols, trades cut into random overlapping chunks, shuffled, some twice."""
    trades = real_trades() + real_trades(ETH_FILE)
    rng = random.Random(20210404)
    chunks = []
    for _ in range(12):
        lo = rng.randrange(len(trades))
        chunks.append(trades[lo : lo + rng.randrange(1, 600)])
    chunks.append(trades)  # make the union everything
    chunks += rng.sample(chunks, 4)
    rng.shuffle(chunks)
    store = Store(db_url)
    for chunk in chunks:
        shuffled = chunk[:]
        rng.shuffle(shuffled)
        store.upsert(shuffled)
    assert stored(db_url) == expected(trades)


def test_failed_transaction_leaves_no_partial_write(db_url: str) -> None:
    """An error after the rows were written rolls all of them back."""
    trades = real_trades()
    conn = connect(parse_db_url(db_url))

    class Boom(Exception):
        pass

    original = conn.execute_many

    def write_then_fail(sql: str, rows: object) -> None:
        original(sql, rows)  # type: ignore[arg-type]
        raise Boom

    conn.execute_many = write_then_fail  # type: ignore[method-assign]
    with pytest.raises(Boom):
        upsert_trades(conn, trades)
    conn.close()
    assert stored(db_url) == []
    Store(db_url).upsert(trades)
    assert stored(db_url) == expected(trades)


@pytest.mark.mysql
def test_concurrent_writers_on_mariadb(mysql_db: str) -> None:
    """Eight threads, each its own connection, upsert overlapping chunks of the same minutes
    at once: gap-lock deadlocks and first-insert races are retried, nothing double counts."""
    url = migrated(mysql_db)
    trades = real_trades()
    rng = random.Random(7)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(seed: int) -> None:
        local = random.Random(seed)
        store = Store(url, attempts=30, timeout=60)
        try:
            store.connection()  # connected before the barrier, so the first batches collide
            barrier.wait()
            for _ in range(4):
                lo = local.randrange(len(trades) // 2)
                store.upsert(trades[lo : lo + local.randrange(200, len(trades))])
            store.upsert(trades if seed == 0 else trades[: len(trades) // 2])
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    seeds = [0, *(rng.randrange(10**6) for _ in range(7))]
    threads = [threading.Thread(target=writer, args=(seed,)) for seed in seeds]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert stored(url) == expected(trades)
