"""lambda/handler.py against the real S3 server and MariaDB, with events shaped like S3's."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import threading
import time
from types import ModuleType
from typing import Any

import pymysql
import pytest
from botocore.exceptions import ClientError
from tests.store.helpers import (
    BTC_FILE,
    ETH_FILE,
    HAND,
    HAND_ROWS,
    expected,
    load_handler,
    mysql_kwargs,
    ndjson,
    real_trades,
    s3_event,
    stored,
)

from tradepipe.core import SourceError, Trade
from tradepipe.store import Store

PREFIX = "trades/symbol={s}/date=2021-04-04/hour=20/minute={m}/"


def put(s3: Any, bucket: str, key: str, trades: list[Trade], extra: bytes = b"") -> str:
    body = gzip.compress(ndjson(trades) + extra)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def key(symbol: str = "BTCUSDT", minute: str = "03", name: str = "a.ndjson.gz") -> str:
    return PREFIX.format(s=symbol, m=minute) + name


def test_single_object_hand_checked(handler: ModuleType, s3: Any, bucket: str, db: str) -> None:
    k = put(s3, bucket, key(name="hand.ndjson.gz"), HAND)
    summary = handler.handler(s3_event(bucket, [k]), None)
    assert summary == {"objects": 1, "trades": 4, "added": 4, "rejected": 0}
    assert stored(db) == HAND_ROWS


def test_duplicate_delivery(handler: ModuleType, s3: Any, bucket: str, db: str) -> None:
    trades = real_trades()
    event = s3_event(bucket, [put(s3, bucket, key(), trades)])
    handler.handler(event, None)
    again = handler.handler(event, None)
    assert again["added"] == 0 and again["trades"] == len(trades)
    assert stored(db) == expected(trades)


def test_overlapping_objects(handler: ModuleType, s3: Any, bucket: str, db: str) -> None:
    trades = real_trades()
    a = put(s3, bucket, key(name="a.ndjson.gz"), trades[:800])
    b = put(s3, bucket, key(name="b.ndjson.gz"), trades[500:])
    handler.handler(s3_event(bucket, [a]), None)
    summary = handler.handler(s3_event(bucket, [b]), None)
    assert summary["added"] == len(trades) - 800
    assert stored(db) == expected(trades)


def test_minute_split_across_three_objects_in_reverse(
    handler: ModuleType, s3: Any, bucket: str, db: str
) -> None:
    trades = real_trades()
    minute = [t for t in trades if t.time_ms // 60_000 == trades[0].time_ms // 60_000]
    third = len(minute) // 3
    parts = [minute[:third], minute[third : 2 * third], minute[2 * third :]]
    keys = [put(s3, bucket, key(name=f"part{i}.ndjson.gz"), p) for i, p in enumerate(parts)]
    for k in reversed(keys):
        handler.handler(s3_event(bucket, [k]), None)
    assert stored(db) == expected(minute)


def test_key_with_spaces_and_special_characters(
    handler: ModuleType, s3: Any, bucket: str, db: str
) -> None:
    odd = key(name="résumé de+plus (1) & co=%41 ~!.ndjson.gz")
    put(s3, bucket, odd, HAND)
    event = s3_event(bucket, [odd])
    raw = event["Records"][0]["s3"]["object"]["key"]
    assert "+" in raw and "%2B" in raw and " " not in raw  # encoded as S3 encodes keys
    handler.handler(event, None)
    assert stored(db) == HAND_ROWS


def test_several_records_in_one_event(handler: ModuleType, s3: Any, bucket: str, db: str) -> None:
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    keys = [put(s3, bucket, key("BTCUSDT"), btc), put(s3, bucket, key("ETHUSDT"), eth)]
    summary = handler.handler(s3_event(bucket, keys), None)
    assert summary["objects"] == 2 and summary["added"] == len(btc) + len(eth)
    assert stored(db) == expected(btc + eth)


def test_mixed_good_and_malformed_lines(
    handler: ModuleType, s3: Any, bucket: str, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trades = real_trades()[:40]
    bad = [b'{"e":"aggTrade","s":"BTCUSDT","a":5,"p":"1e3","q":"1","f":1,"l":1,"T":1,"m":true}',
           b"{not json", b'{"e":"kline"}']  # fmt: skip
    body = ndjson(trades[:20]) + b"\n".join(bad) + b"\n" + ndjson(trades[20:])
    k = key(name="mixed.ndjson.gz")
    s3.put_object(Bucket=bucket, Key=k, Body=gzip.compress(body))
    summary = handler.handler(s3_event(bucket, [k]), None)
    assert summary == {"objects": 1, "trades": 40, "added": 40, "rejected": 3}
    assert stored(db) == expected(trades)
    copy = s3.get_object(Bucket=bucket, Key="rejected/" + k.removesuffix(".gz"))
    assert copy["Body"].read() == b"\n".join(bad) + b"\n"
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warning = next(e for e in logs if e["msg"] == "rejected lines copied")
    assert warning["rejected"] == 3
    assert warning["reasons"] == {"bad_decimal": 1, "invalid_json": 1, "wrong_event": 1}


def test_rejected_copy_is_put_only_after_the_upsert_committed(
    handler: ModuleType, s3: Any, bucket: str, db: str
) -> None:
    """At the moment the handler's client sends the rejected/ copy, the object's good trades are
    already committed (read from another connection): a failed copy never holds them back."""
    trades = real_trades()[:50]
    k = put(s3, bucket, key(name="order.ndjson.gz"), trades, extra=b"{not json\n")
    seen: list[tuple[str, list[tuple[str, ...]]]] = []

    def observe(params: dict[str, Any], **_: Any) -> None:
        seen.append((params["Key"], stored(db)))

    client = handler._s3(handler.Config.from_environ(os.environ))
    client.meta.events.register("before-parameter-build.s3.PutObject", observe)
    summary = handler.handler(s3_event(bucket, [k]), None)
    assert summary["rejected"] == 1
    assert seen == [("rejected/" + k.removesuffix(".gz"), expected(trades))]


def test_truncated_gzip_raises_and_writes_nothing(
    handler: ModuleType, s3: Any, bucket: str, db: str
) -> None:
    whole = gzip.compress(ndjson(real_trades()))
    k = key(name="truncated.ndjson.gz")
    s3.put_object(Bucket=bucket, Key=k, Body=whole[: len(whole) // 2])
    with pytest.raises(SourceError, match="truncated gzip"):
        handler.handler(s3_event(bucket, [k]), None)
    assert stored(db) == []


def test_missing_object_raises(handler: ModuleType, bucket: str, db: str) -> None:
    with pytest.raises(ClientError, match="NoSuchKey"):
        handler.handler(s3_event(bucket, [key(name="gone.ndjson.gz")]), None)


def test_database_unreachable_fails_then_retry_is_exact(
    aws_env: None, s3: Any, bucket: str, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trades = real_trades()
    event = s3_event(bucket, [put(s3, bucket, key(), trades)])
    monkeypatch.setenv("TRADEPIPE_DB_URL", "mysql://u:pw@127.0.0.1:9/nodb?connect_timeout=1")
    cold = load_handler()
    started = time.monotonic()
    with pytest.raises(pymysql.OperationalError):
        cold.handler(event, None)
    assert time.monotonic() - started < 30  # retries are bounded
    monkeypatch.setenv("TRADEPIPE_DB_URL", db)
    load_handler().handler(event, None)  # Lambda's retry, after the database is back
    assert stored(db) == expected(trades)


def test_warm_connection_reused_and_reopened_when_killed(
    handler: ModuleType, s3: Any, bucket: str, db: str, mysql_url: str
) -> None:
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    handler.handler(s3_event(bucket, [put(s3, bucket, key("BTCUSDT"), btc[:600])]), None)
    conn = handler._Warm.store.connection()
    thread_id = conn.raw.thread_id()
    handler.handler(s3_event(bucket, [put(s3, bucket, key("ETHUSDT"), eth)]), None)
    assert handler._Warm.store.connection().raw.thread_id() == thread_id  # reused, warm
    admin = pymysql.connect(**mysql_kwargs(mysql_url), autocommit=True)
    with admin, admin.cursor() as cur:
        cur.execute("KILL CONNECTION %s", (thread_id,))  # the server drops it between calls
    handler.handler(s3_event(bucket, [put(s3, bucket, key("BTCUSDT", name="b"), btc)]), None)
    assert handler._Warm.store.connection().raw.thread_id() != thread_id
    assert stored(db) == expected(btc + eth)


def wait_for_blocked_insert(admin: Any, timeout: float = 30) -> None:
    """Until another session's INSERT into trade_minutes is waiting (on our held gap)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.processlist WHERE command = 'Query' "
                "AND id <> CONNECTION_ID() AND info LIKE 'INSERT INTO trade_minutes%%'"
            )
            if cur.fetchall():
                return
        time.sleep(0.05)
    raise AssertionError("the handler never blocked on the held gap")


def dirty_rows(admin: Any) -> list[tuple[Any, ...]]:
    """BTCUSDT rows' counts, uncommitted changes included (READ UNCOMMITTED)."""
    with admin.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        cur.execute(
            "SELECT `timestamp`, total_count_b + total_count_s FROM trade_minutes "
            "WHERE symbol = 'BTCUSDT' ORDER BY `timestamp`"
        )
        return list(cur.fetchall())


@pytest.mark.mysql
def test_mariadb_killed_mid_transaction_no_partial_write_then_exact_retry(
    handler: ModuleType, s3: Any, bucket: str, db: str, stack_control: Any
) -> None:
    """The second object's transaction has already rewritten one row and is blocked inserting
    the next when MariaDB is killed: the invocation fails, that row is back as it was, and
    Lambda's retry of the whole event ends exactly."""
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    minute_04 = [t for t in btc if t.time_ms // 60_000 != btc[0].time_ms // 60_000]
    Store(db).upsert(minute_04[:100])  # BTCUSDT 20:04 exists: the handler will update it
    before = stored(db)
    event = s3_event(bucket, [put(s3, bucket, key("ETHUSDT"), eth), put(s3, bucket, key(), btc)])

    # Another session holds the gap where BTCUSDT 20:03 would be inserted (ETHUSDT's rows fall
    # in another gap, so the first object is not held up).
    holder = pymysql.connect(**mysql_kwargs(db))
    admin = pymysql.connect(**mysql_kwargs(db), autocommit=True)
    failure: list[BaseException] = []

    def invoke() -> None:
        try:
            handler.handler(event, None)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=invoke)
    try:
        holder.begin()
        with holder.cursor() as cur:
            cur.execute(
                "SELECT * FROM trade_minutes WHERE symbol = 'BTCUSDT' "
                "AND `timestamp` = '2021-04-04 20:03:00' FOR UPDATE"
            )
        committed = dirty_rows(admin)
        worker.start()
        wait_for_blocked_insert(admin)
        # the 20:04 row is already rewritten (uncommitted) when the 20:03 insert blocks
        assert dirty_rows(admin) != committed
        stack_control.stop_sync("mysql", kill=True)
    finally:
        for c in (holder, admin):
            with contextlib.suppress(pymysql.MySQLError):
                c.close()
    worker.join(60)
    assert not worker.is_alive()
    assert failure and isinstance(failure[0], pymysql.MySQLError), failure
    stack_control.start_sync("mysql")

    after = stored(db)
    assert [r for r in after if r[0] == "ETHUSDT"] == expected(eth)  # first object committed
    assert [r for r in after if r[0] == "BTCUSDT"] == [r for r in before]  # no partial write
    handler.handler(event, None)  # Lambda's retry: the whole event again, on a warm module
    assert stored(db) == expected(btc + eth)


@pytest.mark.parametrize("shape", ["url", "rds-json"])
def test_database_url_from_secrets_manager(
    aws_env: None,
    s3: Any,
    bucket: str,
    db: str,
    s3_client_kwargs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shape: str,
) -> None:
    """TRADEPIPE_DB_SECRET_ID: the secret (on the moto server) holds the URL or RDS's JSON;
    it is read once per cold start and the password never reaches the log."""
    import boto3

    endpoint = s3_client_kwargs["endpoint_url"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
    monkeypatch.delenv("TRADEPIPE_DB_URL", raising=False)
    kw = mysql_kwargs(db)
    secret = db if shape == "url" else json.dumps(
        {"username": kw["user"], "password": kw["password"], "host": kw["host"],
         "port": kw["port"], "dbname": kw["database"], "engine": "mariadb"}
    )  # fmt: skip
    sm = boto3.client("secretsmanager", **s3_client_kwargs)
    name = f"tradepipe-test-{bucket}"
    arn = sm.create_secret(Name=name, SecretString=secret)["ARN"]
    try:
        monkeypatch.setenv("TRADEPIPE_DB_SECRET_ID", arn)
        cold = load_handler()
        trades = real_trades()
        cold.handler(s3_event(bucket, [put(s3, bucket, key(), trades)]), None)
        assert stored(db) == expected(trades)
        out = capsys.readouterr().out
        assert "database configured" in out and f":{kw['password']}@" not in out
    finally:
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
