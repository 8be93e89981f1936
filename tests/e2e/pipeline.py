"""The whole pipeline, wired from separate processes, for one test (or the soak run).

    tradepipe replay (emulator, --rebase-time --record) ─ws/rest─> tradepipe produce
      ─> Kafka (a fresh topic, created by the producer) ─> tradepipe sink (a fresh group)
      ─> a fresh bucket on the S3 server ─ObjectCreated notification─> SQS queue
      ─> LocalLambda (lambda/handler.py) ─> a fresh, migrated MariaDB database

Every process listens on a free port of 127.0.0.1 (port 0; the address is read back from the
process's first lines). Trade times are rebased to "now" by the emulator: Kafka's retention
acts on record timestamps, and two-year-old trades would sit in segments deletable as soon as
they roll. The emulator's record of what it published is the tally (:mod:`.tally`).

:meth:`Pipeline.settle` waits stage by stage (published -> produced -> in S3 -> invoked) and
:meth:`Pipeline.assert_exact` compares; on a mismatch it says at which stage trades went
missing or were doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import boto3
from prometheus_client.parser import text_string_to_metric_families

from tradepipe.store import connect, fetch_texts, migrate, parse_db_url

from .invoker import LocalLambda, configure_notifications
from .processes import ROOT, Service
from .tally import aggregate_rows, record_matches_input, row_diff, row_sums, tally

HANDLER = ROOT / "lambda" / "handler.py"


@dataclass
class Plan:
    """What to run: the input files and each component's knobs."""

    inputs: Sequence[Path]
    symbols: Sequence[str]
    speed: float = 5.0
    malformed: int = 0
    seed: int = 0
    # sink: small objects make many puts, commits and objects per minute (more to get wrong)
    max_object_trades: int = 200_000
    grace_seconds: float = 1.0
    # the local Lambda
    workers: int = 2
    retry_delays: Sequence[int] = (2, 4)
    producer_env: Mapping[str, str] = field(default_factory=dict)
    sink_env: Mapping[str, str] = field(default_factory=dict)
    handler_log_level: str = "WARNING"


def load_handler() -> ModuleType:
    """A fresh copy of ``lambda/handler.py``: one Lambda execution environment, cold."""
    import importlib.util
    import logging
    import sys

    logging.getLogger("tradepipe.lambda").handlers.clear()
    name = f"e2e_handler_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(samples: Mapping[tuple[str, Any], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


class Pipeline:
    def __init__(
        self,
        plan: Plan,
        workdir: Path,
        *,
        kafka: str,
        db_url: str,
        s3_kwargs: Mapping[str, str],
    ) -> None:
        self.plan, self.dir = plan, workdir
        self.kafka, self.db_url, self.s3_kwargs = kafka, db_url, dict(s3_kwargs)
        tag = uuid.uuid4().hex[:10]
        self.topic, self.group, self.bucket = f"e2e-{tag}", f"e2e-sink-{tag}", f"e2e-{tag}"
        self.record = workdir / "published.ndjson"
        self.quarantine = workdir / "quarantine.ndjson"
        self.s3 = boto3.client("s3", **self.s3_kwargs)
        self.sqs = boto3.client("sqs", **self.s3_kwargs)
        self.replay: Service
        self.producer: Service
        self.sink: Service
        self.lam: LocalLambda
        self.replay_url = ""
        self.producer_metrics_url = ""
        self._saved_env: dict[str, str | None] = {}
        self._http: aiohttp.ClientSession | None = None
        self._exit = contextlib.AsyncExitStack()
        self._objects: dict[tuple[str, str], list[tuple[str, int, int]]] = {}

    # ------------------------------------------------------------------ start / stop

    async def __aenter__(self) -> Pipeline:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession()
        await asyncio.to_thread(self._migrate)
        await asyncio.to_thread(self.s3.create_bucket, Bucket=self.bucket)
        self.queue_url, self.failed_url = await asyncio.to_thread(
            configure_notifications, self.s3, self.sqs, self.bucket
        )
        self._set_handler_env()
        await self.start_replay()
        await self.start_producer()
        await self.start_sink()
        self.lam = LocalLambda(
            self.sqs, self.queue_url, self.failed_url, load_handler,
            workers=self.plan.workers, retry_delays=self.plan.retry_delays,
        )  # fmt: skip
        await self._exit.enter_async_context(self.lam)

    async def start_replay(self) -> None:
        p = self.plan
        args = ["replay", *map(str, p.inputs), "--port", "0", "--speed", f"{p.speed:g}",
                "--rebase-time", "--record", str(self.record)]  # fmt: skip
        if p.malformed:
            args += ["--malformed", str(p.malformed), "--seed", str(p.seed)]
        self.replay = Service("replay", args, {}, self.dir / "replay.log", restart=False)
        await self.replay.start()
        line = await self.replay.wait_for("listening ws://", 60, event=False)
        self.replay_url = line.split()[2]  # "listening ws://H:P http://H:P"

    async def start_producer(self) -> None:
        ws = self.replay_url.replace("http://", "ws://")
        env = {
            "TRADEPIPE_FEED_SYMBOLS": ",".join(self.plan.symbols),
            "TRADEPIPE_FEED_WS_URL": ws,
            "TRADEPIPE_FEED_REST_URL": self.replay_url,
            "TRADEPIPE_FEED_QUARANTINE_PATH": str(self.quarantine),
            "TRADEPIPE_FEED_STATE_PATH": str(self.dir / "producer-state.json"),
            "TRADEPIPE_FEED_REST_WEIGHT_PER_MINUTE": "6000",
            "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "TRADEPIPE_KAFKA_TOPIC": self.topic,
            "TRADEPIPE_KAFKA_REQUEST_TIMEOUT_MS": "5000",
            "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0",
            "TRADEPIPE_LOG_LEVEL": "info",  # the harness reads events from the log
            **self.plan.producer_env,
        }
        self.producer = Service("producer", ["produce"], env, self.dir / "producer.log")
        await self.producer.start()
        listening = await self.producer.wait_for("metrics_listening", 60)
        self.producer_metrics_url = listening["url"]
        await self.producer.wait_for("ready", 60)

    async def start_sink(self) -> None:
        self.sink = Service("sink", ["sink"], self.sink_environment(), self.dir / "sink.log")
        await self.sink.start()
        await self.sink.wait_for("sink_started", 60)

    def sink_environment(self, spool: str = "spool") -> dict[str, str]:
        """What a ``tradepipe sink`` of this pipeline runs with (one more joins the group:
        with a spool folder of its own, ``spool``; two sinks cannot share one)."""
        return {
            "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "TRADEPIPE_KAFKA_TOPIC": self.topic,
            "TRADEPIPE_KAFKA_GROUP_ID": self.group,
            "TRADEPIPE_S3_BUCKET": self.bucket,
            "TRADEPIPE_S3_ENDPOINT_URL": self.s3_kwargs["endpoint_url"],
            "TRADEPIPE_S3_REGION": self.s3_kwargs["region_name"],
            "AWS_ACCESS_KEY_ID": self.s3_kwargs["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.s3_kwargs["aws_secret_access_key"],
            "TRADEPIPE_SINK_GRACE_SECONDS": f"{self.plan.grace_seconds:g}",
            "TRADEPIPE_SINK_MAX_OBJECT_TRADES": str(self.plan.max_object_trades),
            "TRADEPIPE_SINK_METRICS_LISTEN": "127.0.0.1:0",
            "TRADEPIPE_SINK_SPOOL_DIR": str(self.dir / spool),
            "TRADEPIPE_LOG_LEVEL": "info",
            **self.plan.sink_env,
        }

    def sink_metrics_url(self) -> str:
        started = self.sink.events("sink_started", self.sink.runs[-1].log_offset)
        assert started, f"the sink has not started:\n{self.sink.tail()}"
        return str(started[0]["metrics"])

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._exit.aclose()
        for name in ("producer", "sink", "replay"):
            service: Service | None = getattr(self, name, None)
            if service is not None:
                with contextlib.suppress(Exception):
                    await service.stop(30)
        if self._http is not None:
            await self._http.close()
        self._restore_handler_env()
        with contextlib.suppress(Exception):
            await self._delete_topic()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._delete_bucket)

    def _migrate(self) -> None:
        conn = connect(parse_db_url(self.db_url))
        try:
            migrate(conn)
        finally:
            conn.close()

    def _set_handler_env(self) -> None:
        """What the Lambda runtime and its configuration give the handler (it reads os.environ)."""
        env = {
            "TRADEPIPE_DB_URL": self.db_url,
            "TRADEPIPE_S3_ENDPOINT_URL": self.s3_kwargs["endpoint_url"],
            "AWS_ACCESS_KEY_ID": self.s3_kwargs["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.s3_kwargs["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.s3_kwargs["region_name"],
            "TRADEPIPE_LOG_LEVEL": self.plan.handler_log_level,
        }
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        os.environ.pop("TRADEPIPE_DB_SECRET_ID", None)

    def _restore_handler_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    async def _delete_topic(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            await admin.delete_topics([self.topic])
        finally:
            await admin.close()

    def _delete_bucket(self) -> None:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        self.s3.delete_bucket(Bucket=self.bucket)
        for url in (self.queue_url, self.failed_url):
            self.sqs.delete_queue(QueueUrl=url)

    # ------------------------------------------------------------------ observing

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    async def emulator(self, action: str = "status") -> dict[str, Any]:
        """``GET /_control/status`` or ``POST /_control/<action>`` on the emulator."""
        url = f"{self.replay_url}/_control/{action}"
        request = self.http.get(url) if action == "status" else self.http.post(url)
        async with request as resp:
            resp.raise_for_status()
            body: dict[str, Any] = await resp.json()
            return body

    async def metrics(self, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with self.http.get(f"{url}/metrics") as resp:
            resp.raise_for_status()
            return parse_metrics(await resp.text())

    async def producer_metric(self, name: str) -> float:
        return metric_sum(await self.metrics(self.producer_metrics_url), name)

    def _list_objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix="trades/"
        ):
            out.extend(page.get("Contents", []))
        return out

    def _read_object(self, key: str) -> list[tuple[str, int, int]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        out = []
        for line in gzip.decompress(body).splitlines():
            e = json.loads(line)
            out.append((str(e["s"]), int(e["a"]), int(e["T"])))
        return out

    async def objects(self) -> dict[str, list[tuple[str, int, int]]]:
        """Every object under ``trades/``: key -> its trades (symbol, a, T); cached by ETag."""
        listing = await asyncio.to_thread(self._list_objects)
        out = {}
        for obj in listing:
            cache_key = (obj["Key"], obj["ETag"])
            if cache_key not in self._objects:
                self._objects[cache_key] = await asyncio.to_thread(self._read_object, obj["Key"])
            out[obj["Key"]] = self._objects[cache_key]
        return out

    def rows(self) -> list[tuple[str, ...]]:
        conn = connect(parse_db_url(self.db_url))
        try:
            return [tuple(r) for r in fetch_texts(conn)]
        finally:
            conn.close()

    # ------------------------------------------------------------------ waiting

    async def wait_published(self, seconds: float = 300) -> dict[str, Any]:
        """Until the emulator has published its whole tape."""
        async with asyncio.timeout(seconds):
            # polling: the state is in another process
            while not (status := await self.emulator())["finished"]:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        return status

    async def wait_fraction(self, fraction: float, seconds: float = 120) -> None:
        """Until ``fraction`` of the tape is published."""
        async with asyncio.timeout(seconds):
            while True:
                status = await self.emulator()
                if status["published"] >= fraction * status["tape_trades"] or status["finished"]:
                    return
                await asyncio.sleep(0.05)

    async def wait_in_s3(self, expected: int, seconds: float = 120) -> None:
        """Until the objects hold ``expected`` distinct trades (a flush happens a minute's
        end + grace after the last trade, by the wall clock)."""
        distinct = 0
        try:
            async with asyncio.timeout(seconds):
                while True:
                    objects = await self.objects()
                    distinct = len({(s, a) for trades in objects.values() for s, a, _ in trades})
                    if distinct >= expected:
                        return
                    await asyncio.sleep(0.5)
        except TimeoutError:
            raise AssertionError(
                f"S3 holds {distinct} of {expected} trades after {seconds} s; "
                + await self.missing_in_s3()
                + "\n"
                + await self.report()
            ) from None

    async def missing_in_s3(self) -> str:
        """Which published trades no object holds, and whether Kafka has them."""
        objects = await self.objects()
        stored = {(s, a) for trades in objects.values() for s, a, _ in trades}
        missing = sorted(tally_ids(self.record) - stored)
        in_kafka = await self.topic_ids()
        lost_before = [m for m in missing if m not in in_kafka]
        return (
            f"{len(missing)} missing, e.g. {missing[:5]}; of those {len(lost_before)} are not "
            f"in Kafka either; Kafka holds {len(in_kafka)} distinct trades"
        )

    async def topic_ids(self) -> set[tuple[str, int]]:
        """(symbol, a) of every record in the topic (read from the start, no group)."""
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.kafka, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None,
        )  # fmt: skip
        await consumer.start()
        out: set[tuple[str, int]] = set()
        try:
            empty = 0
            while empty < 3:
                batch = await consumer.getmany(timeout_ms=500)
                empty = 0 if batch else empty + 1
                for records in batch.values():
                    for r in records:
                        e = json.loads(r.value)
                        out.add((e["s"], e["a"]))
        finally:
            await consumer.stop()
        return out

    async def settle(self, seconds: float = 120) -> None:
        """Published, in S3, and every notification handled."""
        await self.wait_published(seconds)
        expected = len(tally_ids(self.record))
        await self.wait_in_s3(expected, seconds)
        await self.lam.idle(seconds=seconds)

    # ------------------------------------------------------------------ judging

    async def report(self) -> str:
        """Counts at each stage, restarts and the tail of each log: for failure messages."""
        lines = []
        with contextlib.suppress(Exception):
            status = await self.emulator()
            lines.append(
                f"emulator: published {status['published']} of {status['tape_trades']}, "
                f"finished {status['finished']}, malformed sent {status['malformed_sent']}, "
                f"connections {status['connections_total']}"
            )
        with contextlib.suppress(Exception):
            produced = await self.producer_metric("tradepipe_trades_produced_total")
            lines.append(f"producer: produced {produced:.0f}")
        with contextlib.suppress(Exception):
            objects = await self.objects()
            ids = [(s, a) for trades in objects.values() for s, a, _ in trades]
            lines.append(f"s3: {len(objects)} objects, {len(ids)} lines, {len(set(ids))} distinct")
        with contextlib.suppress(Exception):
            rows = await asyncio.to_thread(self.rows)
            n = sum(int(r[2]) + int(r[3]) for r in rows)
            lines.append(f"db: {len(rows)} rows, {n} trades")
        s = self.lam.stats if hasattr(self, "lam") else None
        if s is not None:
            lines.append(f"lambda: {s.invocations} invocations, {s.failures} failed, "
                         f"{s.to_failure_destination} to the failure destination, "
                         f"errors {s.errors[:3]}")  # fmt: skip
        for name in ("replay", "producer", "sink"):
            service: Service | None = getattr(self, name, None)
            if service is not None:
                exits = [r.exit_code for r in service.runs]
                lines.append(f"--- {name}: {len(service.runs)} run(s), exits {exits}; log tail:")
                lines.append(service.tail(15))
        return "\n".join(lines)

    async def assert_exact(self) -> list[tuple[str, ...]]:
        """Rows == ``tradepipe aggregate`` over what was published (every column), totals ==
        the independent Decimal tally, and what was published == the input files."""
        problems = record_matches_input(self.record, self.plan.inputs)
        assert not problems, "; ".join(problems)
        want = await aggregate_rows([self.record])
        got = await asyncio.to_thread(self.rows)
        diff = row_diff(got, want)
        assert not diff, diff + "\n" + await self.report()
        sums, expected = row_sums(got), tally(self.record)
        assert sums == expected, f"row totals {sums} != tally {expected}"
        return got


def tally_ids(record: Path) -> set[tuple[str, int]]:
    out = set()
    with record.open("rb") as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                out.add((e["s"], e["a"]))
    return out


async def wait_until(predicate: Any, seconds: float, what: str, step: float = 0.1) -> None:
    """Poll an async predicate until true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")
