"""``tradepipe sink`` against the real Kafka broker and the moto S3 server.

Every test uses its own topic, consumer group and S3 prefix, and real recorded trades produced
the way ``tradepipe produce`` does (key = symbol, value = the raw aggTrade, timestamp = T).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gzip
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from structlog.testing import capture_logs
from tests.conftest import unavailable
from tests.core.fuzzing import bad_lines
from tests.core.helpers import line as trade_line

from tradepipe.config import Settings
from tradepipe.core import Layout, group_of, minute_of, parse_event, parse_key, sink_object_name
from tradepipe.local.broker import LocalBroker, LocalSource
from tradepipe.producer import Record
from tradepipe.sink import Options, serve
from tradepipe.sink.metrics import SinkMetrics

pytestmark = [pytest.mark.kafka, pytest.mark.s3]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "binance"
FILES = [
    "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson",
    "cryptofeed-BINANCE-ee25be.ethusdt.aggTrade.ndjson",
    "cryptofeed-BINANCE-ee25be.dotusdt.aggTrade.ndjson",
    "cryptofeed-BINANCE-b38f7c.aggTrade.ndjson",
]
AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def recorded_trades() -> list[bytes]:
    missing = [f for f in FILES if not (DATA / f).exists()]
    if missing:
        unavailable(f"recorded trades absent: {missing} (see ../shared/data/README.md)")
    lines = [x for f in FILES for x in (DATA / f).read_bytes().splitlines() if x.strip()]
    # the order a combined stream delivers them in: by trade time
    return sorted(lines, key=lambda x: (parse_event(x).time_ms, parse_event(x).symbol))


def four_times() -> list[bytes]:
    """The recorded trades, each four times in a row: 2.5 MB in trade-time order (repeated
    end to end instead, every copy would arrive late and flush tiny objects)."""
    return [line for line in recorded_trades() for _ in range(4)]


async def produce(bootstrap: str, topic: str, lines: list[bytes], partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Recorded trades carry 2021 timestamps: with time-based retention Kafka would roll and
        # delete their segments within minutes (retention counts from the record timestamp).
        keep = {"retention.ms": "-1", "retention.bytes": "-1"}
        resp = await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=keep)])
        assert not [err for _, err, *_ in resp.topic_errors if err], resp
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for line in lines:
            trade = parse_event(line)
            futures.append(
                await producer.send(
                    topic, line, key=trade.symbol.encode(), timestamp_ms=trade.time_ms
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def objects_under(kwargs: dict[str, str], bucket: str, prefix: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    async with aioboto3.Session().client("s3", **kwargs) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                obj = await s3.get_object(Bucket=bucket, Key=item["Key"])
                out[item["Key"][len(prefix) + 1 :]] = await obj["Body"].read()
    return out


def lines_in(objs: dict[str, bytes]) -> list[bytes]:
    return [x for body in objs.values() for x in gzip.decompress(body).splitlines()]


async def wait_for_lines(
    kwargs: dict[str, str], bucket: str, prefix: str, n: int, wait_s: float = 90
) -> dict[str, bytes]:
    deadline = time.monotonic() + wait_s
    while True:
        objs = await objects_under(kwargs, bucket, prefix)
        if len(lines_in(objs)) >= n or time.monotonic() > deadline:
            return objs
        await asyncio.sleep(0.5)


def assert_exact(objs: dict[str, bytes], lines: list[bytes], topic: str) -> None:
    """Exactly the produced trades, each once, each in an object of its trade minute (and of
    its symbol, per symbol: Settings' sink.layout)."""
    stored = lines_in(objs)
    assert sorted(stored) == sorted(lines)
    for key, body in objs.items():
        parsed = parse_key("trades/" + key)
        assert parsed.name.startswith(f"{topic}+") and parsed.name.endswith(".ndjson.gz")
        for line in gzip.decompress(body).splitlines():
            trade = parse_event(line)
            assert parsed.admits(trade.symbol, minute_of(trade.time_ms)), key


# The sinks' spools of this test session (removed when it ends): a few MB each.
SPOOLS = Path(tempfile.mkdtemp(prefix="tradepipe-test-spools-"))
atexit.register(shutil.rmtree, SPOOLS, ignore_errors=True)


def spool_of(group: str) -> Path:
    """One spool per consumer group (per host, in production): a restart of the same group
    finds its spool, tests with their own group never share one."""
    return SPOOLS / group


def sink_settings(
    bootstrap: str,
    endpoint: str,
    bucket: str,
    topic: str,
    group: str,
    prefix: str,
    layout: Layout = Layout.PER_MINUTE,
) -> Settings:
    return Settings.load(None, {}).replace(
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "group_id": group},
        s3={"bucket": bucket, "prefix": prefix, "endpoint_url": endpoint},
        sink={
            "metrics_listen": "127.0.0.1:0",
            "grace_seconds": 5.0,
            "spool_dir": str(spool_of(group)),
            "layout": layout.value,
        },
    )


@contextlib.asynccontextmanager
async def running(settings: Settings, metrics: SinkMetrics) -> AsyncIterator[asyncio.Task[int]]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, Options(metrics=metrics)))
    try:
        yield task
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 60) == 0


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"topic": f"sink-{tag}", "group": f"sink-{tag}", "prefix": f"test-sink-{tag}/trades"}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("layout", list(Layout))
async def test_objects_hold_exactly_the_produced_trades(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
    layout: Layout,
) -> None:
    lines = recorded_trades()
    await produce(kafka_bootstrap, names["topic"], lines)
    settings = sink_settings(
        kafka_bootstrap, s3_endpoint, s3_bucket, names["topic"], names["group"], names["prefix"],
        layout,
    )  # fmt: skip
    metrics = SinkMetrics()
    async with running(settings, metrics):
        objs = await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines))
    assert_exact(objs, lines, names["topic"])
    assert {parse_key("trades/" + k).layout for k in objs} == {layout}
    # one object per (partition, group, minute): nothing here arrives late or overflows. The
    # partition of a symbol is the producer's (murmur2 of the key over the topic's 2)
    partition_of = DefaultPartitioner()
    groups = {
        (partition_of(t.symbol.encode(), [0, 1], [0, 1]), group_of(layout, t.symbol),
         minute_of(t.time_ms))
        for t in map(parse_event, lines)
    }  # fmt: skip
    assert len(objs) == len(groups)
    if layout is Layout.PER_SYMBOL:  # 26 (symbol, minute) pairs, 10 (partition, minute) ones
        assert len(objs) == 26
    else:
        assert len(objs) == 10
    assert metrics.trades._value.get() == len(lines)
    # the stop wrote nothing more and committed everything: a second run finds no work
    again = SinkMetrics()
    async with running(settings, again):
        await asyncio.sleep(3)
    assert again.objects.labels("due")._value.get() == 0
    assert await objects_under(s3_client_kwargs, s3_bucket, names["prefix"]) == objs


def sink_env(
    bootstrap: str,
    endpoint: str,
    bucket: str,
    n: dict[str, str],
    layout: Layout = Layout.PER_MINUTE,
) -> dict[str, str]:
    return {
        "TRADEPIPE_SINK_LAYOUT": layout.value,
        **os.environ,
        **AWS_ENV,
        "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPIPE_KAFKA_TOPIC": n["topic"],
        "TRADEPIPE_KAFKA_GROUP_ID": n["group"],
        "TRADEPIPE_S3_BUCKET": bucket,
        "TRADEPIPE_S3_PREFIX": n["prefix"],
        "TRADEPIPE_S3_ENDPOINT_URL": endpoint,
        "TRADEPIPE_SINK_METRICS_LISTEN": "127.0.0.1:0",
        "TRADEPIPE_SINK_SPOOL_DIR": str(spool_of(n["group"])),
    }


@pytest.mark.parametrize(
    ("layout", "crash_after_puts"),
    [(Layout.PER_SYMBOL, 1), (Layout.PER_SYMBOL, 4), (Layout.PER_SYMBOL, 13),
     (Layout.PER_MINUTE, 6)],
)  # fmt: skip
async def test_killed_between_put_and_commit_gives_the_clean_objects(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
    layout: Layout,
    crash_after_puts: int,
    tmp_path: Path,
) -> None:
    lines = recorded_trades()
    await produce(kafka_bootstrap, names["topic"], lines)
    # the clean run: another consumer group and prefix over the same topic
    clean_names = {
        **names,
        "group": names["group"] + "-clean",
        "prefix": names["prefix"].replace("/trades", "-clean/trades"),
    }
    settings = sink_settings(
        kafka_bootstrap,
        s3_endpoint,
        s3_bucket,
        names["topic"],
        clean_names["group"],
        clean_names["prefix"],
        layout,
    )
    async with running(settings, SinkMetrics()):
        clean = await wait_for_lines(s3_client_kwargs, s3_bucket, clean_names["prefix"], len(lines))
    assert_exact(clean, lines, names["topic"])

    env = sink_env(kafka_bootstrap, s3_endpoint, s3_bucket, names, layout)
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parent / "crashing_sink.py"),
        env={**env, "CRASH_AFTER_PUTS": str(crash_after_puts)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    crash_out, _ = await asyncio.wait_for(crashing.communicate(), 120)
    assert crashing.returncode == -signal.SIGKILL, crash_out[-2000:]
    partial = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
    assert 1 <= len(partial) < len(clean)
    # restarted: resumes from the last commit, rewrites the same keys with the same bytes
    log_path = tmp_path / "sink.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tradepipe.cli",
            "sink",
            env=env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines), 150)
            await asyncio.sleep(2)  # anything still to come would be a duplicate
            after = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    out = log_path.read_bytes()
    assert proc.returncode == 0, out[-3000:]
    assert sorted(after) == sorted(clean), out[-3000:]
    assert after == clean
    # the restart resumed from the crashed run's last commit (when it had made one)
    assert b"partition_assigned" in out


@pytest.mark.parametrize("crash_after_appends", [1, 3])
async def test_killed_between_spooling_and_the_kafka_commit_gives_every_trade_once(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
    crash_after_appends: int,
    tmp_path: Path,
) -> None:
    """Records spooled whose offset commit never happened come again from Kafka: the spool
    knows them by the committed offset (a partition with none gets one before its first
    records are spooled: 1; after a commit: 3, each partition taking two fetches) and takes
    each once; the objects hold every trade once, and nothing looks like a re-created topic."""
    lines = four_times()  # 2.5 MB: two fetches (1 MB a partition) per partition
    await produce(kafka_bootstrap, names["topic"], lines)
    env = sink_env(kafka_bootstrap, s3_endpoint, s3_bucket, names)
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parent / "crashing_spool_sink.py"),
        env={**env, "CRASH_AFTER_APPENDS": str(crash_after_appends)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    crash_out, _ = await asyncio.wait_for(crashing.communicate(), 120)
    assert crashing.returncode == -signal.SIGKILL, crash_out[-2000:]
    log_path = tmp_path / "sink.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradepipe.cli", "sink",
            env=env, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines), 150)
            await asyncio.sleep(2)  # anything still to come would be a duplicate
            objs = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    out = log_path.read_bytes()
    assert proc.returncode == 0, out[-3000:]
    assert_exact(objs, lines, names["topic"])
    assert b"redelivered_records_ignored" in out, out[-3000:]
    assert b"spool_offsets_went_back" not in out


class FlakyProxy:
    """A TCP proxy to the S3 server that, while ``down``, drops every connection it accepts."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.down, self.dropped = target, True, 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FlakyProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.dropped += 1
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_s3_outage_loses_nothing_and_shows_retries(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
) -> None:
    lines = recorded_trades()
    await produce(kafka_bootstrap, names["topic"], lines)
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    async with FlakyProxy((host, int(port))) as proxy:
        settings = sink_settings(
            kafka_bootstrap, proxy.url, s3_bucket, names["topic"], names["group"], names["prefix"]
        )
        metrics = SinkMetrics()
        server_url: dict[str, Any] = {}
        async with running(settings, metrics):
            deadline = time.monotonic() + 60
            # polling a counter the sink updates; there is no event to wait on
            while metrics.put_retries._value.get() < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            assert metrics.put_retries._value.get() >= 3, "no retries while S3 was down"
            assert await objects_under(s3_client_kwargs, s3_bucket, names["prefix"]) == {}
            # the health endpoint says why
            proxy.down = False
            objs = await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines))
            server_url["retries"] = metrics.put_retries._value.get()
        assert proxy.dropped >= 3
    assert_exact(objs, lines, names["topic"])
    assert server_url["retries"] >= 3
    assert sum(v._value.get() for v in metrics.put_errors._metrics.values()) >= 3


async def test_null_and_malformed_values_are_skipped_counted_quarantined_and_it_goes_on(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    """Issue 11: a tombstone stopped the sink at the same offset on every restart."""
    lines = recorded_trades()
    pretty = msgspec.json.format(lines[0], indent=2)  # spans lines
    bad = bad_lines(seed=17, count=1500)
    await produce(kafka_bootstrap, names["topic"], lines[1:])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        t = parse_event(lines[0]).time_ms
        values: list[bytes | None] = [None, pretty, *bad, None, b"", None]
        for value in values:
            await producer.send_and_wait(names["topic"], value, key=b"BTCUSDT", timestamp_ms=t)
    finally:
        await producer.stop()
    settings = sink_settings(
        kafka_bootstrap, s3_endpoint, s3_bucket, names["topic"], names["group"], names["prefix"]
    ).replace(sink={"quarantine_path": str(tmp_path / "sink-quarantine.ndjson")})
    metrics = SinkMetrics()
    async with running(settings, metrics) as task:
        objs = await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines))
        await asyncio.sleep(1)
        assert not task.done()  # still consuming
    assert_exact(objs, [pretty.replace(b"\n", b" "), *lines[1:]], names["topic"])
    refused = len(values) - 1  # all but the pretty-printed trade
    by_reason = {
        s.labels["reason"]: s.value
        for m in metrics.registry.collect()
        if m.name == "tradepipe_sink_malformed_records"
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert sum(by_reason.values()) == refused and by_reason["empty"] == 4
    quarantined = (tmp_path / "sink-quarantine.ndjson").read_bytes().splitlines()
    assert len(quarantined) == refused
    assert all(len(q) < 200_000 for q in quarantined)  # raw values capped at 64 KiB


def spool_kept(logs: list[dict[str, Any]]) -> list[tuple[str, int, int, str]]:
    return [
        (e["log_level"], e["partition"], e["records"], e["offsets"])
        for e in logs
        if e["event"] == "spool_kept"
    ]


async def test_a_stop_with_s3_down_keeps_the_records_in_the_spool_and_the_next_run_puts_them(
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
) -> None:
    """The shutdown's drain is bounded (``Options.shutdown_seconds``): records it could not
    write stay in the spool on disk, logged with their partition and offsets, and the exit
    status is 0 (nothing was left in memory). The next run -- local mode, a new in-process
    broker numbering its records from 0 again -- writes them, and its own, each once."""
    now = int(time.time() * 1000)
    values = [trade_line(a=100 + i, f=200 + i, l=200 + i, T=now, E=now) for i in range(10)]
    broker = LocalBroker(names["topic"], max_messages=100)
    await broker.publish([Record("BTCUSDT", 100 + i, now, v) for i, v in enumerate(values)])
    await broker.close()  # read to the end, then the stop: everything is held for the drain
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    settings = sink_settings(
        "127.0.0.1:1", s3_endpoint, s3_bucket, names["topic"], names["group"], names["prefix"]
    ).replace(sink={"grace_seconds": 600.0})  # nothing is due before the stop
    async with FlakyProxy((host, int(port))) as proxy:
        down = settings.replace(s3={"endpoint_url": proxy.url})
        options = Options(source=LocalSource(broker), serve_metrics=False, shutdown_seconds=1.0)
        stop = asyncio.Event()
        stop.set()
        with capture_logs() as logs:
            status = await asyncio.wait_for(serve(down, stop, options), 60)
    assert status == 0 and proxy.dropped >= 1
    assert await objects_under(s3_client_kwargs, s3_bucket, names["prefix"]) == {}
    assert [e["log_level"] for e in logs if e["event"] == "shutdown_puts_cut_off"] == ["error"]
    assert spool_kept(logs) == [("warning", 0, 10, "0-9")]
    assert not [e for e in logs if e["event"] == "shutdown_left_behind"]

    more = [trade_line(a=200 + i, f=300 + i, l=300 + i, T=now, E=now) for i in range(5)]
    again = LocalBroker(names["topic"], max_messages=100)
    await again.publish([Record("BTCUSDT", 200 + i, now, v) for i, v in enumerate(more)])
    await again.close()
    options = Options(source=LocalSource(again), serve_metrics=False)
    with capture_logs() as logs:
        status = await asyncio.wait_for(serve(settings, stop, options), 60)
    assert status == 0 and spool_kept(logs) == []
    objs = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
    assert sorted(lines_in(objs)) == sorted(values + more)
    # the second run's records were numbered after the first's: one object from offset 0
    last = len(values) + len(more) - 1
    assert [parse_key("trades/" + k).name for k in objs] == [
        sink_object_name(names["topic"], 0, 0, last)
    ]


def _put_retries(metrics: SinkMetrics) -> float:
    return float(metrics.put_retries._value.get())


async def _until_retrying(metrics: SinkMetrics, task: asyncio.Task[int]) -> None:
    deadline = time.monotonic() + 60
    # polling a counter the sink updates; there is no event to wait on
    while _put_retries(metrics) < 2 and time.monotonic() < deadline and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert _put_retries(metrics) >= 2 and not task.done(), "no retries while S3 was down"


async def test_a_stop_while_writes_are_retried_is_bounded_and_the_next_run_writes_all(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
) -> None:
    """S3 down, the cutter retrying a flush (for ever): a stop still ends within
    shutdown_seconds, exit 0, every partition's spooled records logged with their offsets.
    The spool's checkpoint is behind the cut-off flush, so the next run (S3 up, same group)
    writes exactly the produced trades."""
    lines = recorded_trades()
    await produce(kafka_bootstrap, names["topic"], lines)
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    async with FlakyProxy((host, int(port))) as proxy:
        settings = sink_settings(
            kafka_bootstrap, proxy.url, s3_bucket, names["topic"], names["group"], names["prefix"]
        )
        metrics, stop = SinkMetrics(), asyncio.Event()
        options = Options(metrics=metrics, serve_metrics=False, shutdown_seconds=2.0)
        with capture_logs() as logs:
            task = asyncio.create_task(serve(settings, stop, options))
            await _until_retrying(metrics, task)
            stop.set()
            started = time.monotonic()
            status = await asyncio.wait_for(task, 60)
            took = time.monotonic() - started
    assert status == 0
    assert took < 2.0 + 5.0, f"the stop took {took:.1f} s"
    assert await objects_under(s3_client_kwargs, s3_bucket, names["prefix"]) == {}
    assert [e["log_level"] for e in logs if e["event"] == "shutdown_puts_cut_off"] == ["error"]
    kept = spool_kept(logs)
    assert kept and {p for _, p, _, _ in kept} <= {0, 1} and all(n > 0 for _, _, n, _ in kept)
    for _, _, n, offsets in kept:
        first, _, last = offsets.partition("-")
        assert 0 <= int(first) <= int(last) and n == int(last) - int(first) + 1, kept
    assert metrics.spool_records._value.get() == sum(n for _, _, n, _ in kept)
    again = sink_settings(
        kafka_bootstrap, s3_endpoint, s3_bucket, names["topic"], names["group"], names["prefix"]
    )
    async with running(again, SinkMetrics()):
        objs = await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines))
        await asyncio.sleep(2)  # anything still to come would be a duplicate
        objs = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
    assert_exact(objs, lines, names["topic"])


async def test_a_cut_off_local_sink_reports_every_record_not_in_its_spool(
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
) -> None:
    """The in-process broker keeps nothing after the process. A tiny spool bound pauses the
    reader after its first fetch (10,000 records) while S3 is down; at the stop, the records
    spooled are kept (exit status still decided by the rest), the records never read are
    reported at error level with their offsets, and the exit status is 1."""
    t0 = int(time.time() * 1000) // 60_000 * 60_000 - 10 * 60_000  # minutes already over
    n = 10_050  # more than one fetch (10,000): some are never read when the loop is cut off
    records = [
        Record("BTCUSDT", i, t, trade_line(a=i, f=i, l=i, T=t, E=t))
        for i in range(n)
        for t in [t0 + (0 if i < 5_000 else 70_000)]  # the second minute makes the first due
    ]
    broker = LocalBroker(names["topic"], max_messages=20_000)
    await broker.publish(records)
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    async with FlakyProxy((host, int(port))) as proxy:
        settings = sink_settings(
            "127.0.0.1:1", proxy.url, s3_bucket, names["topic"], names["group"], names["prefix"]
        ).replace(sink={"spool_max_bytes": 100_000})
        metrics, stop = SinkMetrics(), asyncio.Event()
        options = Options(
            source=LocalSource(broker), metrics=metrics, serve_metrics=False, shutdown_seconds=1.0
        )
        with capture_logs() as logs:
            task = asyncio.create_task(serve(settings, stop, options))
            await _until_retrying(metrics, task)
            assert metrics.spool_paused._value.get() == 1
            stop.set()
            status = await asyncio.wait_for(task, 60)
    assert status == 1
    assert await objects_under(s3_client_kwargs, s3_bucket, names["prefix"]) == {}
    assert [e["log_level"] for e in logs if e["event"] == "spool_full"] == ["error"]
    left = [e for e in logs if e["event"] == "shutdown_left_behind"]
    assert [(e["log_level"], e["partition"], e["unread"], e["unread_offsets"]) for e in left] == [
        ("error", 0, n - 10_000, f"10000-{n - 1}")
    ]
    assert spool_kept(logs) == [("warning", 0, 10_000, "0-9999")]
    summary = [e for e in logs if e["event"] == "stopped_with_leftovers"]
    assert [(e["log_level"], e["unread"]) for e in summary] == [("error", n - 10_000)]


async def test_a_tiny_spool_bound_pauses_alarms_resumes_and_loses_nothing(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
) -> None:
    """S3 down and a spool bound far below the topic's size: reading pauses at the bound
    (gauge, counter, error log, /healthz 503 naming the spool), nothing is dropped; once S3 is
    back the spool drains, reading resumes, and the objects hold every trade exactly once."""
    lines = four_times()  # more than one fetch (1 MB a partition) holds
    await produce(kafka_bootstrap, names["topic"], lines)
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    async with FlakyProxy((host, int(port))) as proxy:
        settings = sink_settings(
            kafka_bootstrap, proxy.url, s3_bucket, names["topic"], names["group"], names["prefix"]
        ).replace(sink={"spool_max_bytes": 150_000})
        metrics = SinkMetrics()
        with capture_logs() as logs:
            async with running(settings, metrics) as task:
                deadline = time.monotonic() + 60
                # polling a gauge the sink sets; there is no event to wait on
                while metrics.spool_paused._value.get() != 1 and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                assert metrics.spool_paused._value.get() == 1 and not task.done()
                url = next(e["metrics"] for e in logs if e["event"] == "sink_started")
                async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
                    assert resp.status == 503 and "spool full" in await resp.text()
                spooled = metrics.spool_records._value.get()
                assert 0 < spooled < len(lines)
                assert await metric(url, "tradepipe_sink_spool_bytes") >= 150_000
                proxy.down = False
                objs = await wait_for_lines(
                    s3_client_kwargs, s3_bucket, names["prefix"], len(lines), 120
                )
                await asyncio.sleep(1)  # anything still to come would be a duplicate
                objs = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
                async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
                    assert resp.status == 200, await resp.text()
    assert_exact(objs, lines, names["topic"])
    assert metrics.spool_paused._value.get() == 0
    assert metrics.spool_pauses._value.get() >= 1
    full = [e for e in logs if e["event"] == "spool_full"]
    assert full and all(e["log_level"] == "error" and e["limit"] == 150_000 for e in full)
    assert len([e for e in logs if e["event"] == "spool_resumed_reading"]) == len(full)


async def test_a_re_created_topic_starts_the_partition_over_instead_of_refusing_its_offsets(
    kafka_bootstrap: str,
    s3_endpoint: str,
    s3_bucket: str,
    s3_client_kwargs: dict[str, str],
    names: dict[str, str],
) -> None:
    """The spool refuses offsets below what it has (re-deliveries). A topic deleted and
    created again numbers its records from 0: those are new records, not re-deliveries. The
    sink says so at error level, writes what its spool holds of the partition, forgets it and
    reads the new log from its start: every record of both topics is in S3, once."""
    lines = recorded_trades()
    first, second = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    await produce(kafka_bootstrap, names["topic"], first, partitions=1)
    settings = sink_settings(
        kafka_bootstrap, s3_endpoint, s3_bucket, names["topic"], names["group"], names["prefix"]
    )
    async with running(settings, SinkMetrics()):
        await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(first))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([names["topic"]])
        deadline = time.monotonic() + 60
        # polling the broker's topic list; there is no event to wait on
        while names["topic"] in await admin.list_topics() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    for _attempt in range(50):  # the deletion completes on the broker in the background
        try:
            await produce(kafka_bootstrap, names["topic"], second, partitions=1)
            break
        except AssertionError:
            await asyncio.sleep(0.5)
    else:
        raise AssertionError("the topic could not be created again")
    with capture_logs() as logs:
        async with running(settings, SinkMetrics()):
            objs = await wait_for_lines(s3_client_kwargs, s3_bucket, names["prefix"], len(lines))
            await asyncio.sleep(1)  # anything still to come would be a duplicate
            objs = await objects_under(s3_client_kwargs, s3_bucket, names["prefix"])
    assert sorted(lines_in(objs)) == sorted(lines)
    went_back = [e for e in logs if e["event"] == "spool_offsets_went_back"]
    assert [(e["log_level"], e["offset"], e["spool_next_offset"]) for e in went_back] == [
        ("error", 0, len(first))
    ]
    assert [e["event"] for e in logs if e["event"] == "spool_partition_started_over"] == [
        "spool_partition_started_over"
    ]
