"""Warm Lambda handler on a 10,000-trade object against the local MariaDB and S3 server.

    scripts/stack up            # MariaDB 127.0.0.1:33306, S3 http://127.0.0.1:35555
    .venv/bin/python bench/lambda.py [--trades 10000] [--runs 20]

Each run invokes ``handler.handler`` (already warm: config, S3 client and database connection
reused) with an S3 ObjectCreated event for a gzip NDJSON object of ``--trades`` synthetic
aggTrades (bench/gen_trades.py, seeded), in two cases:

- *new*: an object whose trades are not stored yet (rows inserted);
- *redelivered*: the same object again (every trade already stored; nothing written).

It prints milliseconds per invocation (median, p90) and where the time goes, using a throwaway
database and bucket that it removes afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pymysql

from tradepipe.core import Trade, decompress, iter_trades
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
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
        ]
    }


def ms(samples: list[float]) -> str:
    s = sorted(samples)
    return f"median {statistics.median(s):6.1f} ms, p90 {s[int(0.9 * (len(s) - 1))]:6.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
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
            lines = generate(args.trades, seed=i, start_ms=1_732_406_400_000 + i * 3_600_000)
            bodies.append(gzip.compress(b"\n".join(lines) + b"\n"))
            keys.append(f"trades/bench/{i:04d}.ndjson.gz")
            s3.put_object(Bucket=bucket, Key=keys[-1], Body=bodies[-1])
        handler = load_module("handler", ROOT / "lambda" / "handler.py")
        handler.handler(event(bucket, keys[0]), None)  # cold start, not measured
        new, again = [], []
        for key in keys[1:]:
            t0 = time.perf_counter()
            handler.handler(event(bucket, key), None)
            new.append((time.perf_counter() - t0) * 1000)
        for key in keys[1:]:
            t0 = time.perf_counter()
            handler.handler(event(bucket, key), None)
            again.append((time.perf_counter() - t0) * 1000)
        # where the time goes, for one object
        t0 = time.perf_counter()
        body = s3.get_object(Bucket=bucket, Key=keys[1])["Body"].read()
        t1 = time.perf_counter()
        trades = [t for t in iter_trades(decompress(body, "b"), "b") if isinstance(t, Trade)]
        parse_ms = (time.perf_counter() - t1) * 1000
        store = Store(url)
        store.connection()  # warm, like the handler's
        t2 = time.perf_counter()
        store.upsert(trades)  # all stored already: lock, read, nothing to write
        t3 = time.perf_counter()
        store.close()
        print(f"{args.trades:,}-trade object ({len(bodies[1]):,} bytes gzip), {args.runs} runs:")
        print(f"  new object:       {ms(new)} per invocation")
        print(f"  redelivered:      {ms(again)} per invocation")
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
