"""Benchmark ``tradepipe produce``: emulator -> producer (a separate process) -> real Kafka.

    .venv/bin/python bench/produce.py [--trades 200000] [--rate 5000] [--seconds 20]
        [--compression none] [--kafka 127.0.0.1:39092]

1. Throughput: the emulator (in this process) pushes ``--trades`` synthetic BTCUSDT aggTrades
   as fast as it can (speed 0), starting when the producer reports ``READY=1`` (sd_notify);
   the sustained rate is acknowledged trades / time from that start to the last
   acknowledgement, polled every 50 ms from the producer's own ``/metrics``.
2. Latency at a fixed rate: ``--rate`` trades/s for ``--seconds`` with trade times rebased to
   now, so ``tradepipe_trade_to_kafka_seconds`` (trade time T -> broker ack) is meaningful;
   percentiles are interpolated within the histogram's buckets (1, 2, 3, 5, 7.5, 10, 15 ms...).
   T has millisecond resolution, so figures carry up to 1 ms of rounding.
3. Peak RSS of the producer process (``VmHWM``), and RSS sampled over the run (flatness).
4. ``--symbols N`` (instead of 1 and 2): the whole market. The emulator serves a generated
   market of N symbols (``tradepipe replay --symbols``: Zipf-spread rates averaging ``--rate``
   aggTrades/s, market-wide bursts of ``--burst-x`` times that for 5 s of every minute) for
   ``--minutes`` of real time; the producer runs with ``feed.symbols = *`` (exchangeInfo) over
   ceil(N / ``--per-connection``) connections. Reported: the producer's CPU share of one core
   (utime + stime from /proc over wall time: over the run, the median second, and the
   busiest second = a burst), trade->ack p50/p99, peak RSS and RSS first/last, and
   ``unacknowledged`` = trades published - trades acknowledged when the run ends (0 when the
   producer kept up; the bench stops waiting 3 s after the last acknowledgement).

    .venv/bin/python bench/produce.py --symbols 400 [--rate 3000] [--minutes 3] [--burst-x 10]

Needs Kafka (``scripts/stack up``). Prints one summary line per phase and a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tradepipe.config import KafkaSettings
from tradepipe.core import Trade
from tradepipe.replay import Emulator, ReplayOptions, tape_of
from tradepipe.replay.sample import Bursts, market_tape

ROOT = Path(__file__).resolve().parents[1]
RECV = "tradepipe_receive_to_kafka_seconds"


def synthetic(n: int, interval_us: int) -> list[Trade]:
    start = 1_764_000_000_000
    return [
        Trade("BTCUSDT", 1_000_000 + i, Decimal("97000.10") + Decimal(i % 50) / 100,
              Decimal("0.00123000"), 5_000_000 + i, 5_000_000 + i,
              start + i * interval_us // 1000, i % 3 == 0)
        for i in range(n)
    ]  # fmt: skip


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, list[object]]:
    async with http.get(url) as resp:
        text = await resp.text()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def produced(metrics: dict[str, list[object]]) -> float:
    return sum(s.value for s in metrics.get("tradepipe_trades_produced", [])  # type: ignore[attr-defined]
               if s.name.endswith("_total"))  # type: ignore[attr-defined]  # fmt: skip


def total(metrics: dict[str, list[object]], name: str) -> float:
    return sum(s.value for s in metrics.get(name, [])  # type: ignore[attr-defined]
               if s.name.endswith("_total"))  # type: ignore[attr-defined]  # fmt: skip


def gauge(metrics: dict[str, list[object]], name: str) -> float:
    return sum(s.value for s in metrics.get(name, []))  # type: ignore[attr-defined]


def buckets_of(
    metrics: dict[str, list[object]], name: str = "tradepipe_trade_to_kafka_seconds"
) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets: (upper bound, count), sorted."""
    return sorted(
        (float(s.labels["le"]), s.value)  # type: ignore[attr-defined]
        for s in metrics[name]
        if s.name.endswith("_bucket")  # type: ignore[attr-defined]
    )


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Interpolated within the bucket that holds the q-quantile."""
    total = buckets[-1][1]
    target = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= target:
            if le == float("inf"):
                return prev_le
            frac = (target - prev_count) / max(count - prev_count, 1e-9)
            return prev_le + (le - prev_le) * frac
        prev_le, prev_count = le, count
    return prev_le


def percentile(
    metrics: dict[str, list[object]], q: float, name: str = "tradepipe_trade_to_kafka_seconds"
) -> float:
    return quantile(buckets_of(metrics, name), q)


def windows(samples: list[Sample], every: float) -> list[dict[str, object]]:
    """Per ``every`` seconds of a long run (from the scrapes): CPU share, trade->ack p99 of the
    trades acknowledged in that window (histogram deltas), RSS at its end, acknowledged/s."""
    out: list[dict[str, object]] = []
    start = samples[0]
    for s in samples[1:]:
        if s.at - start.at < every and s is not samples[-1]:
            continue
        dt = s.at - start.at
        delta = [(le, c1 - c0) for (le, c1), (_, c0) in zip(s.lat, start.lat, strict=True)]
        recv = [(le, c1 - c0) for (le, c1), (_, c0) in zip(s.recv, start.recv, strict=True)]
        if delta[-1][1] > 0:
            out.append({
                "from_min": round((start.at - samples[0].at) / 60, 1),
                "to_min": round((s.at - samples[0].at) / 60, 1),
                "cpu_share": round((s.cpu - start.cpu) / dt, 3),
                "p50_ms": round(quantile(delta, 0.5) * 1000, 2),
                "p99_ms": round(quantile(delta, 0.99) * 1000, 2),
                "recv_to_ack_p99_ms": round(quantile(recv, 0.99) * 1000, 2),
                "rss_mb": round(s.rss_kb / 1024, 1),
                "acked_per_s": round((s.acked - start.acked) / dt),
            })  # fmt: skip
        start = s
    return out


@dataclass(frozen=True)
class Sample:
    at: float
    cpu: float
    rss_kb: int
    acked: float
    lat: list[tuple[float, float]]
    recv: list[tuple[float, float]]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def phase(  # noqa: C901 - one measurement loop, kept in one piece
    name: str,
    trades: list[Trade],
    speed: float,
    args: argparse.Namespace,
    feed_env: dict[str, str] | None = None,
    streams: int = 1,
    scrape_every: float = 0.05,
    loop_for: float | None = None,
    window: float = 300.0,
) -> dict:
    scrapes = 0
    samples: list[Sample] = []
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    port = 19000 + os.getpid() % 1000
    # loop_for: the tape starts over (ids and times go on) until that many seconds have passed;
    # REST keeps only the newest trades then, so the bench's memory stays bounded
    opts = ReplayOptions(speed=speed, rebase_time=True, queue_high_water=200_000,
                         slow_client_seconds=60, start_now=True, loop=loop_for is not None,
                         rest_history=5_000_000 if loop_for is None else 20_000)  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="bench-produce-"))
    notify_path = str(workdir / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.setblocking(False)
    async with Emulator(tape_of(trades), opts, log=lambda _: None) as emu:
        emu.pause()  # hold the tape until the producer is READY (connected to Kafka too)
        env = {
            "NOTIFY_SOCKET": notify_path,
            "PATH": os.environ.get("PATH", ""),
            **(feed_env or {"TRADEPIPE_FEED_SYMBOLS": "btcusdt"}),
            "TRADEPIPE_FEED_WS_URL": emu.ws_url,
            "TRADEPIPE_FEED_REST_URL": emu.rest_url,
            "TRADEPIPE_FEED_QUARANTINE_PATH": str(workdir / "quarantine.ndjson"),
            "TRADEPIPE_FEED_STATE_PATH": str(workdir / "producer-state.json"),
            "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": args.kafka,
            "TRADEPIPE_KAFKA_TOPIC": topic,
            "TRADEPIPE_KAFKA_COMPRESSION_TYPE": args.compression,
            "TRADEPIPE_KAFKA_LINGER_MS": str(args.linger_ms),
            "TRADEPIPE_KAFKA_BUFFER_MAX_MESSAGES": str(args.buffer),
            "TRADEPIPE_METRICS_LISTEN": f"127.0.0.1:{port}",
            "TRADEPIPE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradepipe.cli", "produce", env=env,
            stdout=None if os.environ.get("BENCH_LOG_LEVEL") else asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        while b"READY=1" not in await asyncio.wait_for(loop.sock_recv(notify, 4096), 60):
            pass
        notify.close()
        os.unlink(notify_path)
        # READY = every connection open; wait for the SUBSCRIBE messages' streams too
        while sum(len(c.subs.streams) for c in emu.connections.values()) < streams:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        emu.resume()
        first_at = time.monotonic()
        cpu_first = cpu_seconds(proc.pid)
        cpu_samples: list[tuple[float, float]] = [(first_at, cpu_first)]
        url = f"http://127.0.0.1:{port}/metrics"
        rss: list[int] = []
        emu_queue_max, buffered_max = 0, 0.0
        last_at = None
        done = 0.0
        scraped_at, market_end = 0.0, None
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 600 + 60 * (args.soak_minutes or args.minutes)
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                rss.append(rss_kb(proc.pid, "VmRSS"))
                queued = max((len(c.queue) for c in emu.connections.values()), default=0)
                emu_queue_max = max(emu_queue_max, queued)
                if time.monotonic() - cpu_samples[-1][0] >= 1.0:
                    cpu_samples.append((time.monotonic(), cpu_seconds(proc.pid)))
                looped = loop_for is not None and time.monotonic() - first_at >= loop_for
                if market_end is None and (emu.finished.is_set() or looped):
                    emu.pause()  # a looped tape: nothing more is published from now on
                    market_end = (time.monotonic(), cpu_seconds(proc.pid))
                # scraping /metrics costs the producer CPU (its page grows with the symbol
                # count): scrape as often as --scrape-every says, and every 0.25 s once the
                # emulator has published everything (to see the last acknowledgement)
                every = 0.25 if market_end else scrape_every
                if time.monotonic() - scraped_at < every:
                    continue
                try:
                    m = await scrape(http, url)
                except aiohttp.ClientError:
                    continue
                scraped_at = time.monotonic()
                scrapes += 1
                buffered_max = max(buffered_max, gauge(m, "tradepipe_buffered_messages"))
                now_done = produced(m)
                if market_end is None:
                    samples.append(Sample(scraped_at, cpu_seconds(proc.pid), rss[-1], now_done,
                                          buckets_of(m), buckets_of(m, RECV)))  # fmt: skip
                if now_done > done:
                    last_at = time.monotonic()
                    done = now_done
                if (loop_for is None and done >= len(trades)) or (
                    market_end is not None and done >= emu.published.count
                ):
                    break
                # a producer that stops making progress (e.g. a gap it cannot fill) must not
                # hang the benchmark: stop once nothing moved for 3 s past a scrape interval
                # and report the count
                if done > 0 and time.monotonic() - (last_at or 0) > 3 + every:
                    break
            m = await scrape(http, url)
        cpu_last, wall_last = cpu_seconds(proc.pid), time.monotonic()
        if market_end is not None and speed > 0:
            # the CPU share while the market ran (not the idle wait for the last scrape)
            wall_last, cpu_last = market_end
        peak = rss_kb(proc.pid, "VmHWM")
        published = emu.published.count
        proc.terminate()
        await proc.wait()
    secs = (last_at or first_at) - first_at
    per_second = sorted(
        (c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1) in itertools.pairwise(cpu_samples)
    )
    out = {
        "phase": name, "trades": int(done), "seconds": round(secs, 2),
        "trades_per_s": round(done / secs) if secs else None,
        "p50_ms": round(percentile(m, 0.50) * 1000, 2),
        "p99_ms": round(percentile(m, 0.99) * 1000, 2),
        "p999_ms": round(percentile(m, 0.999) * 1000, 2),
        "recv_to_ack_p50_ms": round(percentile(m, 0.5, RECV) * 1000, 2),
        "recv_to_ack_p99_ms": round(percentile(m, 0.99, RECV) * 1000, 2),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_mb_first_last": [round(rss[len(rss) // 10] / 1024, 1), round(rss[-1] / 1024, 1)]
        if rss else None,
        "published": published,
        "emulator_queue_max": emu_queue_max,
        "buffered_max": buffered_max,
        "deferred": total(m, "tradepipe_trades_deferred"),
        "backfilled": total(m, "tradepipe_trades_backfilled"),
        "reconnects": total(m, "tradepipe_ws_reconnects"),
        "unacknowledged": published - int(done),
        "cpu_share": round((cpu_last - cpu_first) / (wall_last - first_at), 3),
        "cpu_share_median_s": round(per_second[len(per_second) // 2], 3) if per_second else None,
        "cpu_share_max_s": round(per_second[-1], 3) if per_second else None,
        "compression": args.compression,
        "linger_ms": args.linger_ms,
        "buffer": args.buffer,
        "scrapes": scrapes,
        "windows": windows(samples, window) if loop_for is not None and samples else None,
        "scrape_every_s": scrape_every,
    }  # fmt: skip
    print(json.dumps(out), flush=True)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=5_000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--compression", default="none")
    ap.add_argument(
        "--linger-ms",
        type=int,
        default=KafkaSettings().linger_ms,
        help="kafka.linger_ms (default: the setting's default)",
    )
    ap.add_argument("--buffer", type=int, default=50_000, help="kafka.buffer_max_messages")
    ap.add_argument("--kafka", default=os.environ.get("TRADEPIPE_TEST_KAFKA", "127.0.0.1:39092"))
    ap.add_argument("--only", choices=("throughput", "latency"))
    ap.add_argument("--symbols", type=int, help="the whole-market phase only (point 4)")
    ap.add_argument("--minutes", type=int, default=3, help="--symbols: real minutes of market")
    ap.add_argument("--burst-x", type=float, default=10.0, help="--symbols: burst multiplier")
    ap.add_argument("--per-connection", type=int, default=200, help="--symbols: streams/conn")
    ap.add_argument(
        "--soak-minutes",
        type=float,
        help="--symbols: loop the --minutes market for this long; per --window figures",
    )
    ap.add_argument("--window", type=float, default=300.0, help="--soak-minutes: seconds")
    ap.add_argument(
        "--scrape-every",
        type=float,
        default=15.0,
        help="--symbols: seconds between scrapes of /metrics (Prometheus' 15 s)",
    )
    args = ap.parse_args()
    results = []
    if args.symbols:
        bursts = Bursts(x=args.burst_x) if args.burst_x > 1 else None
        rate = args.rate if "--rate" in sys.argv else 3000
        tape = market_tape(args.symbols, rate, args.minutes, seed=16, bursts=bursts)
        env = {
            "TRADEPIPE_FEED_SYMBOLS": "*",
            "TRADEPIPE_FEED_MAX_STREAMS_PER_CONNECTION": str(args.per_connection),
        }
        out = await phase(f"market-{args.symbols}", list(tape.trades), 1.0, args, env,
                          streams=args.symbols, scrape_every=args.scrape_every,
                          loop_for=args.soak_minutes * 60 if args.soak_minutes else None,
                          window=args.window)  # fmt: skip
        out.update(symbols=args.symbols, mean_rate=round(len(tape.trades) / args.minutes / 60),
                   burst_x=args.burst_x, minutes=args.minutes)  # fmt: skip
        print(json.dumps(out, indent=1))
        return
    if args.only != "latency":
        results.append(await phase("throughput", synthetic(args.trades, 100), 0, args))
    if args.only != "throughput":
        n = args.rate * args.seconds
        results.append(await phase("latency", synthetic(n, 1_000_000 // args.rate), 1.0, args))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
