"""Soak: an hour of replayed trades through the whole pipeline, at 20x speed (~3 minutes).

    scripts/stack up        # Kafka, MariaDB, S3 on 127.0.0.1
    .venv/bin/python -m bench.soak [--speed 20] [--out soak.csv]   # from the repository root

The end-to-end harness of ``tests/e2e`` (each daemon a separate process: ``tradepipe replay``
with ``--rebase-time`` -> ``tradepipe produce`` -> Kafka -> ``tradepipe sink`` -> the S3 server
-> bucket notification -> the local Lambda -> MariaDB) over the shipped sample
(``samples/*-aggtrades-60m.ndjson.gz``: 81,586 BTCUSDT + ETHUSDT aggTrades), with the daemons'
default settings (sink grace 5 s). It reports:

- **RSS over time** of each process (replay, producer, sink, and this process, which hosts
  the Lambda workers), sampled every second: a line every 30 s, min/max at the end;
- **freshness**: for every trade, trade time ``T`` (rebased: the wall time at which the
  emulator published it) -> the end of the first successful handler invocation of the object
  holding it, i.e. when its row became visible; percentiles, and the same measured from the end
  of the trade's minute (what per-minute objects cannot avoid: a minute is written once closed);
- **exactness**: the rows against ``tradepipe aggregate`` over what was published, every
  column, and the independent Decimal tally.

Throwaway topic, group, bucket and database; all removed afterwards. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pymysql

# run as a module from the repository root (`python -m bench.soak`), like pytest: the harness
# of tests/e2e is importable without touching sys.path
from tests.conftest import mysql_params, read_env_file
from tests.e2e.pipeline import Pipeline, Plan
from tests.e2e.processes import rss_of

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = sorted((ROOT / "samples").glob("*-aggtrades-60m.ndjson.gz"))
MINUTE = 60.0


def stack() -> dict[str, str]:
    env = read_env_file(Path(os.environ.get("STACK_DIR", ROOT / ".stack")) / "env")
    env.update({k: v for k, v in os.environ.items() if k.startswith("TRADEPIPE_TEST_")})
    missing = [k for k in ("TRADEPIPE_TEST_KAFKA", "TRADEPIPE_TEST_MYSQL_URL",
                           "TRADEPIPE_TEST_S3_ENDPOINT") if not env.get(k)]  # fmt: skip
    if missing:
        sys.exit(f"soak: {', '.join(missing)} not set: run `scripts/stack up` first")
    return env


def s3_client_kwargs(env: dict[str, str]) -> dict[str, str]:
    """boto3 client arguments for the stack's S3 server."""
    return {
        "endpoint_url": env["TRADEPIPE_TEST_S3_ENDPOINT"],
        "region_name": env.get("TRADEPIPE_TEST_S3_REGION", "us-east-1"),
        "aws_access_key_id": env.get("TRADEPIPE_TEST_S3_ACCESS_KEY", "test"),
        "aws_secret_access_key": env.get("TRADEPIPE_TEST_S3_SECRET_KEY", "test"),
    }


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def throwaway_db(url: str, create: bool) -> str:
    params = mysql_params(url)
    params.pop("database")
    name = f"tp_soak_{uuid.uuid4().hex[:10]}" if create else url.rsplit("/", 1)[1]
    conn = pymysql.connect(**params, autocommit=True)  # type: ignore[call-overload]
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`" if create else f"DROP DATABASE `{name}`")
    return url.rsplit("/", 1)[0] + "/" + name


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.0f}"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


async def sample_rss(p: Pipeline, rows: list[dict[str, Any]], stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        row = {
            "t": round(time.monotonic() - started, 1),
            "replay": p.replay.rss_bytes(),
            "producer": p.producer.rss_bytes(),
            "sink": p.sink.rss_bytes(),
            "lambda_host": rss_of(os.getpid()),
        }
        rows.append(row)
        if len(rows) % 30 == 1:
            print(f"  t={row['t']:6.0f}s RSS MB: replay {mb(row['replay'])}, producer "
                  f"{mb(row['producer'])}, sink {mb(row['sink'])}, lambda host "
                  f"{mb(row['lambda_host'])}", flush=True)  # fmt: skip
        await pause(stop, 1.0)


async def soak(args: argparse.Namespace) -> int:
    env = stack()
    s3_kwargs = s3_client_kwargs(env)
    db = throwaway_db(env["TRADEPIPE_TEST_MYSQL_URL"], create=True)
    plan = Plan(inputs=SAMPLES, symbols=["btcusdt", "ethusdt"], speed=args.speed,
                grace_seconds=args.grace)  # fmt: skip
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tradepipe-soak-"))
    rss: list[dict[str, Any]] = []
    print(f"soak: {len(SAMPLES)} sample files at {args.speed:g}x; logs in {workdir}", flush=True)
    try:
        async with Pipeline(plan, workdir, kafka=env["TRADEPIPE_TEST_KAFKA"], db_url=db,
                            s3_kwargs=s3_kwargs) as p:  # fmt: skip
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(p, rss, stop))
            started = time.monotonic()
            await p.wait_published(seconds=3 * 3600 / args.speed + 300)
            published_s = time.monotonic() - started
            await p.settle(seconds=300)
            stop.set()
            await sampler
            rows = await p.assert_exact()
            objects = await p.objects()
            done_at = p.lam.stats.done_at
            restarts = {s.name: s.restarts for s in (p.producer, p.sink)}
    finally:
        throwaway_db(db, create=False)
    fresh, after_close = [], []
    for key, trades in objects.items():
        for _, _, t_ms in trades:
            fresh.append(done_at[key] - t_ms / 1000)
            minute_end = (t_ms // 60_000 + 1) * MINUTE
            after_close.append(done_at[key] - minute_end)
    n = sum(int(r[2]) + int(r[3]) for r in rows)
    print(f"\nexact: {len(rows)} rows, {n} aggTrades equal `tradepipe aggregate` over the "
          f"published trades (every column) and the Decimal tally", flush=True)  # fmt: skip
    print(f"published in {published_s:.0f} s; {len(objects)} objects; "
          f"{p.lam.stats.invocations} invocations; restarts {restarts}")  # fmt: skip
    for name, values in (("trade time -> row visible", fresh),
                         ("minute close -> row visible", after_close)):  # fmt: skip
        print(f"{name}: p50 {pct(values, 50):.1f} s, p90 {pct(values, 90):.1f} s, "
              f"p99 {pct(values, 99):.1f} s, max {max(values):.1f} s "
              f"(mean {statistics.fmean(values):.1f} s)")  # fmt: skip
    for proc in ("replay", "producer", "sink", "lambda_host"):
        values = [r[proc] for r in rss if r[proc] is not None]
        if values:
            print(
                f"RSS {proc}: start {mb(values[0])} MB, min {mb(min(values))}, "
                f"max {mb(max(values))}, end {mb(values[-1])} MB ({len(values)} samples)"
            )
    if args.out:
        write_csv(Path(args.out), rss)
        print(f"RSS samples: {args.out}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=20.0, help="replay speed (default 20)")
    parser.add_argument("--grace", type=float, default=5.0,
                        help="sink grace seconds (default 5, the daemon's default)")  # fmt: skip
    parser.add_argument("--out", help="write the RSS samples here as CSV")
    parser.add_argument("--workdir", help="where the processes' logs go (default /tmp/...)")
    args = parser.parse_args()
    if len(SAMPLES) != 2:
        sys.exit(f"soak: the shipped samples are missing: {SAMPLES}")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
