"""A long S3 outage through the whole pipeline: the built-in sink's spool against the topic's
retention (issue #14; the short version is ``tests/e2e/test_spool_outage.py``).

    scripts/stack up        # Kafka, MariaDB, S3 on 127.0.0.1
    .venv/bin/python -m bench.outage [--speed 10] [--retention 60] [--outage 300]

The end-to-end harness of ``tests/e2e`` over the shipped one-hour sample (81,586 aggTrades) at
``--speed``; the topic keeps records ``--retention`` seconds (1 s segments); from 5 % of the
tape the sink's path to the S3 server is cut for ``--outage`` seconds by a loopback proxy (the
server keeps its data) while trades keep flowing. It samples the sink's spool every second
(records, bytes, oldest record age), checks that Kafka deleted records before S3 came back,
waits until every trade is in S3 after it returns, stops the sink (SIGTERM, exit 0) and
prints: the spool's peak, how long the backlog took to drain once S3 answered, whether S3 holds
every trade exactly once, and the rows against the independent tally. Not part of ``make
test``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp
from tests.e2e.pipeline import Pipeline, Plan, metric_sum, tally_ids
from tests.e2e.proxy import CutProxy
from tests.e2e.test_spool_outage import _caught_up, log_starts

from bench.soak import SAMPLES, pause, s3_client_kwargs, stack, throwaway_db

SPOOL_METRICS = (
    ("records", "tradepipe_sink_spool_records"),
    ("bytes", "tradepipe_sink_spool_bytes"),
    ("age", "tradepipe_sink_spool_oldest_record_age_seconds"),
)


async def spool_sampler(p: Pipeline, peak: dict[str, float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            samples = await p.metrics(p.sink_metrics_url())
            for key, name in SPOOL_METRICS:
                peak[key] = max(peak.get(key, 0.0), metric_sum(samples, name))
        except (OSError, aiohttp.ClientError, AssertionError) as exc:
            # the sink restarting or not listening yet: sample again
            print(f"  (no sample: {exc!r})", flush=True)
        await pause(stop, 1.0)


async def outage(args: argparse.Namespace) -> int:
    env = stack()
    s3_kwargs = s3_client_kwargs(env)
    host, port = s3_kwargs["endpoint_url"].removeprefix("http://").rsplit(":", 1)
    db = throwaway_db(env["TRADEPIPE_TEST_MYSQL_URL"], create=True)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tradepipe-outage-"))
    print(f"outage: {args.outage:g} s with retention {args.retention:g} s, the sample at "
          f"{args.speed:g}x; logs in {workdir}", flush=True)  # fmt: skip
    peak: dict[str, float] = {}
    try:
        async with CutProxy((host, int(port))) as proxy:
            plan = Plan(
                inputs=SAMPLES, symbols=["btcusdt", "ethusdt"], speed=args.speed,
                producer_env={"TRADEPIPE_KAFKA_RETENTION_MS": str(int(args.retention * 1000)),
                              "TRADEPIPE_KAFKA_SEGMENT_MS": "1000"},
                sink_env={"TRADEPIPE_S3_ENDPOINT_URL": proxy.url},
            )  # fmt: skip
            async with Pipeline(plan, workdir, kafka=env["TRADEPIPE_TEST_KAFKA"], db_url=db,
                                s3_kwargs=s3_kwargs) as p:  # fmt: skip
                stop = asyncio.Event()
                sampler = asyncio.create_task(spool_sampler(p, peak, stop))
                await p.wait_fraction(0.05, seconds=600)
                proxy.down()
                before = await p.objects()
                await asyncio.sleep(args.outage)
                deleted = await log_starts(p)
                still_cut = await p.objects() == before
                status = await p.emulator()
                proxy.up()
                back = time.monotonic()
                print(f"S3 back after {args.outage:g} s; Kafka log starts {deleted}; nothing "
                      f"reached S3 meanwhile: {still_cut}; tape {status['published']} of "
                      f"{status['tape_trades']}", flush=True)  # fmt: skip
                await p.wait_published(seconds=2 * 3600 / args.speed + 600)
                expected = len(tally_ids(p.record))
                deadline = time.monotonic() + 600
                # polling Kafka's committed offsets; there is no event to wait on
                while not await _caught_up(p) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(1)
                exit_code = await p.sink.stop()
                drained = time.monotonic() - back
                stop.set()
                await sampler
                objects = await p.objects()
                ids = [(s, a) for trades in objects.values() for s, a, _ in trades]
                await p.lam.idle(seconds=600)
                await p.assert_exact()
                resets = p.sink.events("offset_reset")
    finally:
        throwaway_db(db, create=False)
    print(f"spool peak: {peak.get('records', 0):.0f} records, {peak.get('bytes', 0) / 1e6:.1f} "
          f"MB, oldest record {peak.get('age', 0):.0f} s old")  # fmt: skip
    print(f"S3 back -> the last trade in S3 and the sink stopped (exit {exit_code}): "
          f"{drained:.0f} s (includes the rest of the tape)")  # fmt: skip
    print(f"S3: {len(ids)} lines, {len(set(ids))} distinct, {expected} published; "
          f"offset resets {len(resets)}; rows exact (aggregate + Decimal tally)")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    ok = exit_code == 0 and len(ids) == len(set(ids)) == expected and not resets and still_cut
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=10.0, help="replay speed (default 10)")
    parser.add_argument("--retention", type=float, default=60.0, help="topic retention, s")
    parser.add_argument("--outage", type=float, default=300.0, help="S3 cut off, s")
    parser.add_argument("--workdir", help="where the processes' logs go (default /tmp/...)")
    args = parser.parse_args()
    return asyncio.run(outage(args))


if __name__ == "__main__":
    raise SystemExit(main())
