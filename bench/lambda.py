"""Warm Lambda handler on a 10,000-trade object against the local MariaDB and S3 server.

    scripts/stack up            # MariaDB 127.0.0.1:33306, S3 http://127.0.0.1:35555
    .venv/bin/python bench/lambda.py [--trades 10000] [--runs 20]
    .venv/bin/python bench/lambda.py --trades 100000 --symbols 400 --runs 5   # per-minute

Each run invokes ``handler.handler`` (already warm: config, S3 client and database connection
reused) with an S3 ObjectCreated event for a gzip NDJSON object of ``--trades`` synthetic
aggTrades, seeded: with ``--symbols 1`` one symbol's trades (bench/gen_trades.py) under a
per-symbol key; with ``--symbols N`` a per-minute object (``trades/date=.../minute=MM/...``)
holding one minute of N symbols, spread over them with heavy-tailed (Zipf) weights as a real
market is. In two cases:

- *new*: an object whose trades are not stored yet (rows inserted);
- *redelivered*: the same object again (every trade already stored; nothing written).

It prints milliseconds per invocation (median, p90; wall clock and this process's CPU time,
which on a shared machine is the better guide to a Lambda with a whole vCPU) and where the time
goes, using a throwaway database and bucket that it removes afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import msgspec
import pymysql

from tradepipe.core import MINUTE_MS, decompress, sink_object_name
from tradepipe.core.batch import read_batch
from tradepipe.store import Store, connect, migrate, parse_db_url
from tradepipe.store.url import MysqlUrl

ROOT = Path(__file__).resolve().parent.parent


def stack_env() -> dict[str, str]:
    env: dict[str, str] = {}
    path = ROOT / ".stack" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.removeprefix("export ").partition("=")
            if sep and not key.startswith("#"):
                env[key.strip()] = value.strip()
    env.update({k: v for k, v in os.environ.items() if k.startswith("TRADEPIPE_TEST_")})
    return env


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def event(bucket: str, key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                # URL-encoded as S3 sends it ("+" of a sink object name is %2B)
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
            }
        ]
    }


def market_minute(n: int, symbols: int, seed: int, minute_ms: int) -> list[bytes]:
    """``n`` aggTrades of one trade minute over ``symbols`` symbols (Zipf weights: the first
    symbol trades most), ids contiguous per symbol, in trade-time order."""
    rng = random.Random(seed)
    names = [f"S{i:04d}USDT" for i in range(symbols)]
    picks = rng.choices(range(symbols), weights=[1 / (i + 1) for i in range(symbols)], k=n)
    times = sorted(rng.randrange(minute_ms, minute_ms + MINUTE_MS) for _ in range(n))
    next_id = [1_000_000 * (i + 1) for i in range(symbols)]
    price = [rng.randint(1_000, 9_000_000) for _ in range(symbols)]  # cents
    lines = []
    for sym, t in zip(picks, times, strict=True):
        a = next_id[sym]
        next_id[sym] += 1
        price[sym] = max(100, price[sym] + rng.choice((-2, -1, 0, 0, 1, 2)))
        q = rng.randint(1, 2_000_000)
        p = price[sym]
        event = {
            "e": "aggTrade", "E": t + 1, "s": names[sym], "a": a,
            "p": f"{p // 100}.{p % 100:02d}000000",
            "q": f"{q // 100_000_000}.{q % 100_000_000:08d}",
            "f": 3 * a, "l": 3 * a + rng.choice((0, 0, 1, 2)), "T": t,
            "m": rng.random() < 0.48, "M": True,
        }  # fmt: skip
        lines.append(msgspec.json.encode(event))
    return lines


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s):6.1f} ms, p90 {s[int(0.9 * (len(s) - 1))]:6.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--symbols", type=int, default=1,
        help="1: a per-symbol object; N > 1: a per-minute object of N symbols",
    )  # fmt: skip
    args = parser.parse_args()
    env = stack_env()
    base_url = parse_db_url(env["TRADEPIPE_TEST_MYSQL_URL"])
    assert isinstance(base_url, MysqlUrl)
    endpoint = env["TRADEPIPE_TEST_S3_ENDPOINT"]
    db_name = f"tp_bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(
        host=base_url.host, port=base_url.port, user=base_url.user,
        password=base_url.password, autocommit=True,
    )  # fmt: skip
    admin.cursor().execute(f"CREATE DATABASE `{db_name}`")
    url = f"mysql://{base_url.user}:{base_url.password}@{base_url.host}:{base_url.port}/{db_name}"
    key_id = secret = "test"  # noqa: S105 - the local S3 server accepts any credentials
    creds = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
    bucket = f"tp-bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    os.environ.update(
        TRADEPIPE_DB_URL=url, TRADEPIPE_S3_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, TRADEPIPE_LOG_LEVEL="WARNING",
    )  # fmt: skip
    keys: list[str] = []
    try:
        conn = connect(parse_db_url(url))
        migrate(conn)
        conn.close()
        bodies = []
        generate = load_module("gen_trades", ROOT / "bench" / "gen_trades.py").generate
        for i in range(args.runs + 1):  # one object per run, each in its own minutes
            start = 1_732_406_400_000 + i * 3_600_000
            if args.symbols > 1:
                lines = market_minute(args.trades, args.symbols, seed=i, minute_ms=start)
                when = time.strftime("%Y-%m-%d/hour=%H/minute=%M", time.gmtime(start / 1000))
                first, last = i * args.trades, (i + 1) * args.trades - 1
                key = f"trades/date={when}/{sink_object_name('aggtrades', 0, first, last)}"
            else:
                lines = generate(args.trades, seed=i, start_ms=start)
                key = f"trades/bench/{i:04d}.ndjson.gz"
            bodies.append(gzip.compress(b"\n".join(lines) + b"\n"))
            keys.append(key)
            s3.put_object(Bucket=bucket, Key=keys[-1], Body=bodies[-1])
        handler = load_module("handler", ROOT / "lambda" / "handler.py")
        handler.handler(event(bucket, keys[0]), None)  # cold start, not measured
        new, again, new_cpu, again_cpu = [], [], [], []
        for samples, cpu in ((new, new_cpu), (again, again_cpu)):
            for key in keys[1:]:
                t0, c0 = time.perf_counter(), time.process_time()
                handler.handler(event(bucket, key), None)
                samples.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
        # where the time goes, for one object
        t0 = time.perf_counter()
        body = s3.get_object(Bucket=bucket, Key=keys[1])["Body"].read()
        t1 = time.perf_counter()
        trades, _ = read_batch(decompress(body, "b"), "b")  # as the handler reads it
        parse_ms = (time.perf_counter() - t1) * 1000
        store = Store(url)
        store.connection()  # warm, like the handler's
        t2 = time.perf_counter()
        store.upsert(trades)  # all stored already: lock, read, nothing to write
        t3 = time.perf_counter()
        store.close()
        what = f"per-minute, {args.symbols} symbols" if args.symbols > 1 else "one symbol"
        rows = len(trades.keys())
        print(f"{args.trades:,}-trade object ({what}, {rows} rows, {len(bodies[1]):,} bytes gzip), "
              f"{args.runs} runs:")  # fmt: skip
        print(f"  new object:       {ms(new)} per invocation; CPU {ms(new_cpu)}")
        print(f"  redelivered:      {ms(again)} per invocation; CPU {ms(again_cpu)}")
        print(f"  (CPU: this process's, the handler's own work; MariaDB and S3 run elsewhere; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")  # fmt: skip
        print(
            f"  one object: S3 get {(t1 - t0) * 1000:.1f} ms, gunzip+parse "
            f"{parse_ms:.1f} ms, upsert (redelivered) {(t3 - t2) * 1000:.1f} ms"
        )
    finally:
        for key in keys:
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        admin.cursor().execute(f"DROP DATABASE `{db_name}`")
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
