"""The handler against a database that stops answering: it gives up before the invocation's
remaining time with DeadlineExceeded, writes nothing, and Lambda's retry then ends exactly.

Between the handler and MariaDB stands tests/store/silent.py's server on 127.0.0.1: one that
accepts and never answers, one that sends MariaDB's greeting and then nothing, and a forwarder
whose open connections go half-open (a warm connection whose path died without a FIN); and
MariaDB itself, holding the handler's transaction on a lock past the deadline.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pymysql
import pytest
from tests.store.helpers import (
    BTC_FILE,
    ETH_FILE,
    expected,
    load_handler,
    mysql_kwargs,
    ndjson,
    real_trades,
    s3_event,
    stored,
)
from tests.store.silent import Silent

from tradepipe.core import Trade
from tradepipe.store import DeadlineExceeded, Store

PREFIX = "trades/symbol={s}/date=2021-04-04/hour=20/minute=03/"
REMAINING_S = 6.0  # the remaining time these invocations start with (test-chosen, short)
pytestmark = pytest.mark.timeout(90)  # a regression would hang in a socket read: fail, fast


class Context:
    """What Lambda passes as ``context``, as far as the handler uses it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.end - time.monotonic()) * 1000))


def put(s3: Any, bucket: str, symbol: str, trades: list[Trade], name: str = "t") -> str:
    key = PREFIX.format(s=symbol) + f"{name}.ndjson.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(ndjson(trades) + b"{bad\n"))
    return key


def rejected_keys(s3: Any, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="rejected/")
    return [o["Key"] for o in listed.get("Contents", [])]


def timed_failure(module: ModuleType, event: dict[str, Any]) -> tuple[float, DeadlineExceeded]:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        module.handler(event, Context(REMAINING_S))
    return time.monotonic() - started, info.value


@pytest.fixture
def upstream(db: str) -> tuple[str, int]:
    kw = mysql_kwargs(db)
    return str(kw["host"]), int(kw["port"])


@pytest.fixture
def forward(upstream: tuple[str, int]) -> Iterator[Silent]:
    with Silent("forward", upstream) as server:
        yield server


@pytest.mark.parametrize("mode", ["mute", "greet"])
def test_silent_database_fails_before_the_remaining_time_and_writes_nothing(
    aws_env: None,
    s3: Any,
    bucket: str,
    db: str,
    upstream: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    trades = real_trades(BTC_FILE)
    event = s3_event(bucket, [put(s3, bucket, "BTCUSDT", trades)])
    with Silent(mode, upstream) as server:
        monkeypatch.setenv("TRADEPIPE_DB_URL", server.url(db))
        elapsed, error = timed_failure(load_handler(), event)
        assert server.accepted >= 1  # it did reach the silent server
    assert elapsed < REMAINING_S, elapsed  # before Lambda's own timeout
    assert "before the deadline, nothing committed" in str(error)
    assert "timed out" in str(error)  # the last error: the socket timeout, named
    assert stored(db) == [] and rejected_keys(s3, bucket) == []  # nothing partially written
    monkeypatch.setenv("TRADEPIPE_DB_URL", db)
    summary = load_handler().handler(event, Context(REMAINING_S))  # Lambda's retry
    assert summary["added"] == len(trades) and summary["rejected"] == 1
    assert stored(db) == expected(trades)


def test_half_open_warm_connection_is_replaced_within_the_invocation(
    aws_env: None, s3: Any, bucket: str, db: str, forward: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm connection's ping times out (bounded, well inside the remaining time), a new
    connection is opened and the invocation succeeds."""
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    monkeypatch.setenv("TRADEPIPE_DB_URL", forward.url(db))
    module = load_handler()
    module.handler(s3_event(bucket, [put(s3, bucket, "BTCUSDT", btc)]), Context(REMAINING_S))
    assert forward.accepted == 1
    forward.silence_open()
    started = time.monotonic()
    summary = module.handler(s3_event(bucket, [put(s3, bucket, "ETHUSDT", eth)]),
                             Context(REMAINING_S))  # fmt: skip
    assert time.monotonic() - started < REMAINING_S
    assert summary["added"] == len(eth)
    assert forward.accepted == 2  # the half-open one was dropped for a new one
    assert stored(db) == expected(btc + eth)


def test_half_open_warm_connection_and_no_answer_fails_cleanly_then_retry_is_exact(
    aws_env: None, s3: Any, bucket: str, db: str, forward: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    monkeypatch.setenv("TRADEPIPE_DB_URL", forward.url(db))
    module = load_handler()
    module.handler(s3_event(bucket, [put(s3, bucket, "BTCUSDT", btc)]), Context(REMAINING_S))
    before, copies = stored(db), rejected_keys(s3, bucket)
    forward.silence_open()
    forward.mode = "mute"  # and new connections are accepted and never answered
    event = s3_event(bucket, [put(s3, bucket, "ETHUSDT", eth)])
    elapsed, error = timed_failure(module, event)
    assert elapsed < REMAINING_S, elapsed
    assert "nothing committed" in str(error)
    assert stored(db) == before and rejected_keys(s3, bucket) == copies  # nothing written
    forward.mode = "forward"
    module.handler(event, Context(REMAINING_S))  # Lambda's retry, on the same warm module
    assert stored(db) == expected(btc + eth)
    assert len(rejected_keys(s3, bucket)) == len(copies) + 1


def sessions_of(admin: Any, database: str) -> int:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.processlist "
            "WHERE db = %s AND id <> CONNECTION_ID()",
            (database,),
        )
        return int(cur.fetchone()[0])


def test_deadline_mid_transaction_commits_nothing_then_retry_is_exact(
    handler: ModuleType, s3: Any, bucket: str, db: str
) -> None:
    """The transaction has rewritten one row (uncommitted) and waits on a lock another session
    holds (MariaDB would wait 10 s) when the deadline comes: the handler gives up before the
    remaining time, the server rolls the transaction back, and the retry ends exactly."""
    btc = real_trades(BTC_FILE)
    minute_04 = [t for t in btc if t.time_ms // 60_000 != btc[0].time_ms // 60_000]
    Store(db).upsert(minute_04[:100])  # BTCUSDT 20:04 exists: the handler will rewrite it
    before = stored(db)
    event = s3_event(bucket, [put(s3, bucket, "BTCUSDT", btc)])
    kw = mysql_kwargs(db)
    holder = pymysql.connect(**kw)
    admin = pymysql.connect(**kw, autocommit=True)
    try:
        idle = sessions_of(admin, kw["database"])  # the holder alone
        holder.begin()
        with holder.cursor() as cur:  # holds the gap where BTCUSDT 20:03 would be inserted
            cur.execute(
                "SELECT * FROM trade_minutes WHERE symbol = 'BTCUSDT' "
                "AND `timestamp` = '2021-04-04 20:03:00' FOR UPDATE"
            )
        elapsed, error = timed_failure(handler, event)
        assert elapsed < REMAINING_S, elapsed
        assert "nothing committed" in str(error) and "timed out" in str(error)
        holder.rollback()  # the server's side of the handler's transaction may now go on...
        deadline = time.monotonic() + 30
        while sessions_of(admin, kw["database"]) > idle:  # ...to find its client gone
            assert time.monotonic() < deadline, "the handler's session never ended"
            time.sleep(0.05)
    finally:
        holder.close()
        admin.close()
    assert stored(db) == before  # the rewritten 20:04 row was rolled back: no partial write
    assert rejected_keys(s3, bucket) == []
    handler.handler(event, Context(REMAINING_S))  # Lambda's retry, on the warm module
    assert stored(db) == expected(btc + minute_04[:100])
