"""``tradepipe run`` with every stand-in swapped for the real component, by configuration only:
Kafka (``kafka.bootstrap_servers``), S3 (``s3.bucket`` + ``s3.endpoint_url``, the moto server)
and MySQL (``db.url = mysql://...``, MariaDB). Same oracle: ``tradepipe aggregate``."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import uuid
from pathlib import Path

import aioboto3
import pytest
from tests.dashboard.helpers import THREE_SYMBOLS, recorded
from tests.local.helpers import aggregate_csv, tradepipe

from tradepipe.commands.run import settings_of, source_urls
from tradepipe.config import ConfigError, Settings
from tradepipe.core import Trade, iter_trades, minute_of, parse_key
from tradepipe.local.pipeline import Plan, Running, serve
from tradepipe.store import connect, fetch_texts, parse_db_url

AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def mysql_texts(url: str) -> list[tuple[str, ...]]:
    conn = connect(parse_db_url(url))
    try:
        return [tuple(r) for r in fetch_texts(conn)]
    finally:
        conn.close()


@pytest.mark.kafka
@pytest.mark.s3
@pytest.mark.mysql
async def test_run_on_kafka_s3_and_mysql(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    mysql_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    files = [str(p) for p in recorded(THREE_SYMBOLS)]
    expected = await aggregate_csv(files)
    total = sum(int(r[2]) + int(r[3]) for r in expected)
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    async with tradepipe("replay", *files, "--port", "0", "--speed", "0") as replay:
        ws = (await replay.wait_line("listening ws://")).split()[1]
        env = {
            "TRADEPIPE_FEED_WS_URL": ws,
            "TRADEPIPE_FEED_REST_URL": ws.replace("ws://", "http://"),
            "TRADEPIPE_FEED_SYMBOLS": "btcusdt,ethusdt,dotusdt",
            "TRADEPIPE_FEED_QUARANTINE_PATH": str(tmp_path / "q.ndjson"),
            "TRADEPIPE_FEED_STATE_PATH": str(tmp_path / "producer-state.json"),
            "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
            "TRADEPIPE_SINK_METRICS_LISTEN": "127.0.0.1:0",
            "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TRADEPIPE_KAFKA_TOPIC": kafka_topic,
            "TRADEPIPE_KAFKA_GROUP_ID": f"run-{kafka_topic}",
            "TRADEPIPE_S3_BUCKET": s3_bucket,
            "TRADEPIPE_S3_ENDPOINT_URL": s3_endpoint,
            "TRADEPIPE_S3_PREFIX": prefix,
            "TRADEPIPE_DB_URL": mysql_db,
            "TRADEPIPE_SINK_OBJECTS_DIR": str(tmp_path / "must-stay-empty"),
            "TRADEPIPE_SINK_SPOOL_DIR": str(tmp_path / "spool"),
            "TRADEPIPE_LOCAL_BROKER": "kafka",
            "TRADEPIPE_SINK_OBJECTS": "s3",
        }
        args = argparse.Namespace(
            config=None, source=None, symbols=None, db=None, dashboard_listen=None, kafka=None
        )
        settings = settings_of(args, env)
        assert (settings.local.broker, settings.sink.objects) == ("kafka", "s3")
        stop = asyncio.Event()
        ready: list[Running] = []
        pipeline = asyncio.create_task(serve(settings, stop, Plan(), ready.append))
        got = 0
        for _ in range(600):
            assert not pipeline.done(), pipeline
            rows = await asyncio.to_thread(mysql_texts, mysql_db) if ready else []
            if (got := sum(int(r[2]) + int(r[3]) for r in rows)) >= total:
                break
            await asyncio.sleep(0.2)
        assert got == total
        assert ready[0].broker is None  # no in-process broker in this mode
        stop.set()
        assert await pipeline == 0
        await replay.stop()
    # MariaDB holds exactly what the offline aggregation prints
    assert await asyncio.to_thread(mysql_texts, mysql_db) == expected
    # the objects went to S3 under the layout, none to the local folder
    assert not (tmp_path / "must-stay-empty").exists()
    seen: set[tuple[str, int]] = set()
    async with aioboto3.Session().client("s3", **s3_client_kwargs) as s3:
        listing = await s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix + "/")
        keys = [o["Key"] for o in listing.get("Contents", [])]
        assert keys
        for key in keys:
            parsed = parse_key(key)
            assert parsed.prefix == prefix
            body = await (await s3.get_object(Bucket=s3_bucket, Key=key))["Body"].read()
            for t in iter_trades(gzip.decompress(body), key):
                assert isinstance(t, Trade)
                assert parsed.admits(t.symbol, minute_of(t.time_ms)), key
                seen.add((t.symbol, t.agg_id))
    assert len(seen) == total


def test_kafka_is_chosen_by_explicit_configuration(tmp_path: Path) -> None:
    def ns(**kw: object) -> argparse.Namespace:
        base = dict(config=None, source=None, symbols=None, db=None, dashboard_listen=None)
        return argparse.Namespace(**{**base, "kafka": None, **kw})

    # the in-process broker unless local.broker = "kafka": a bootstrap address alone does not
    # choose Kafka (one key per concept); --kafka sets local.broker, --kafka HOST:PORT also the
    # address
    assert settings_of(ns(), {}).local.broker == "memory"
    only = settings_of(ns(), {"TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": "h:1"})
    assert (only.local.broker, only.kafka.bootstrap_servers) == ("memory", "h:1")
    assert settings_of(ns(kafka=""), {}).local.broker == "kafka"  # --kafka
    settings = settings_of(ns(kafka="127.0.0.1:1234"), {})
    assert (settings.local.broker, settings.kafka.bootstrap_servers) == ("kafka", "127.0.0.1:1234")
    assert settings_of(ns(), {"TRADEPIPE_LOCAL_BROKER": "kafka"}).local.broker == "kafka"
    config = tmp_path / "c.toml"
    config.write_text('[kafka]\nbootstrap_servers = "h:9092"\n')
    assert settings_of(ns(config=str(config)), {}).local.broker == "memory"
    config.write_text('[local]\nbroker = "kafka"\n')
    assert settings_of(ns(config=str(config)), {}).local.broker == "kafka"
    config.write_text('[local]\nbroker = "rabbitmq"\n')
    refused = r'^local\.broker: expected "memory" \| "kafka", got .rabbitmq.$'
    with pytest.raises(ConfigError, match=refused):
        settings_of(ns(config=str(config)), {})
    # objects: a folder for `run` (RUN_DEFAULTS) unless sink.objects = "s3", which needs a bucket
    assert settings_of(ns(), {}).sink.objects == "folder"
    with pytest.raises(ConfigError, match=r"s3\.bucket .*required"):
        settings_of(ns(), {"TRADEPIPE_SINK_OBJECTS": "s3"})
    s3 = settings_of(ns(), {"TRADEPIPE_SINK_OBJECTS": "s3", "TRADEPIPE_S3_BUCKET": "b-1"})
    assert (s3.sink.objects, s3.s3.bucket) == ("s3", "b-1")
    # --source sets both feed URLs
    settings = settings_of(ns(source="ws://127.0.0.1:9443"), {})
    assert (settings.feed.ws_url, settings.feed.rest_url) == (
        "ws://127.0.0.1:9443",
        "http://127.0.0.1:9443",
    )
    assert source_urls("wss://example.test:443") == (
        "wss://example.test:443",
        "https://example.test:443",
    )
    for bad in ("http://127.0.0.1:1", "ws://", "ws://h:1/stream"):
        with pytest.raises(ConfigError, match="--source"):
            source_urls(bad)
    # the defaults: SQLite under ./data, objects under ./data/objects, dashboard on 8050
    s = Settings.load(None, {})
    assert (s.db.url, s.sink.objects_dir, s.dashboard.listen) == (
        "sqlite:///./data/tradepipe.db",
        "./data/objects",
        "127.0.0.1:8050",
    )
    # the daemons' defaults differ from `run`'s only where RUN_DEFAULTS says so
    run = settings_of(ns(), {})
    assert (s.sink.grace_seconds, s.sink.objects) == (5.0, "s3")
    assert (run.sink.grace_seconds, run.sink.objects) == (1.0, "folder")
    assert run.replace(sink={"grace_seconds": 5.0, "objects": "s3"}) == s
