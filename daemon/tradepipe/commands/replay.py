"""``tradepipe replay FILE... [--host H] [--port P] [--speed X]``: serve recorded trades as a
Binance-compatible WebSocket + REST endpoint. ``tradepipe replay --symbols N`` serves a
generated market of N symbols instead (:func:`tradepipe.replay.sample.market`: Zipf-spread
rates, seeded by ``--seed``), ``--minutes`` long at ``--market-rate`` aggTrades/s on average.

Prints one line ``listening ws://H:P http://H:P`` on stdout once it accepts connections (so a
test or script can start it on ``--port 0`` and read the address), and ``replay finished: N
trades`` when the data is exhausted; connections then stay open until SIGINT/SIGTERM.

Exit status: 0 stopped by a signal, 2 unusable arguments or unreadable files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tradepipe.commands.signals import stop_on_signals
from tradepipe.core import SourceError
from tradepipe.replay.market import Market
from tradepipe.replay.options import ReplayOptions
from tradepipe.replay.sample import Bursts, market_tape
from tradepipe.replay.server import Emulator
from tradepipe.replay.tape import Tape, load_tape

HELP = "Binance-compatible WebSocket + REST emulator over recorded trades"
EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_PORT = 9443


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ReplayOptions()
    add = parser.add_argument
    add(
        "files", nargs="*", metavar="FILE", help="NDJSON (raw or combined, .gz ok) or data-dump CSV"
    )
    add("--symbols", type=int, metavar="N", help="serve a generated market of N symbols, no FILE")
    market_help = {
        "--market-rate": "--symbols: mean aggTrades/s of the whole market (default %(default)g)",
        "--minutes": "--symbols: minutes of data (default %(default)s; --loop for more)",
        "--burst-x": "--symbols: X times the rate 5 s of every minute, whole market",
    }
    add("--market-rate", type=float, default=3000.0, metavar="R", help=market_help["--market-rate"])
    add("--minutes", type=int, default=2, metavar="M", help=market_help["--minutes"])
    add("--burst-x", type=float, default=1.0, metavar="X", help=market_help["--burst-x"])
    add(
        "--unlisted",
        default="",
        metavar="SYM,...",
        help="symbols of the data not trading at first (POST /_control/list?symbol= lists them)",
    )
    add("--host", default=defaults.host, help="address to bind (default %(default)s)")
    add(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to bind, 0 = any free one (default %(default)s)",
    )
    add(
        "--speed",
        type=float,
        default=defaults.speed,
        help="1 = real time by trade time, N = N times faster, 0 = as fast as possible",
    )
    add(
        "--start-now",
        action="store_true",
        help="start the clock at once (default: when the first client subscribes)",
    )
    add(
        "--rebase-time",
        action="store_true",
        help="serve trade times as if the first trade were now, compressed by --speed",
    )
    add("--loop", action="store_true", help="start over at the end (ids and times keep increasing)")
    add("--record", metavar="FILE", help="write every published trade's event line here")
    add("--symbol", help="symbol of data-dump CSV files whose name does not carry it")
    add(
        "--malformed",
        type=int,
        default=0,
        metavar="N",
        help="mix N malformed messages into the feed at random points",
    )
    add("--seed", type=int, default=0, help="seed for --malformed (default %(default)s)")
    add("--ping-interval", type=float, default=defaults.ping_interval, metavar="SECONDS")
    add("--pong-timeout", type=float, default=defaults.pong_timeout, metavar="SECONDS")
    add(
        "--max-connection-seconds",
        type=float,
        default=defaults.max_connection_seconds,
        metavar="SECONDS",
        help="close connections after this long (Binance: 24 h)",
    )
    add(
        "--max-incoming-per-second",
        type=int,
        default=defaults.max_incoming_per_second,
        metavar="N",
        help="client messages per second before disconnect (0 = no limit)",
    )
    add(
        "--rest-weight-limit",
        type=int,
        default=defaults.rest_weight_limit,
        metavar="N",
        help="REST request weight per minute before HTTP 429",
    )
    add("--no-control", action="store_true", help="do not serve the /_control/ endpoints")


def options_from(args: argparse.Namespace) -> ReplayOptions:
    return ReplayOptions(
        host=args.host,
        port=args.port,
        speed=args.speed,
        start_now=args.start_now,
        rebase_time=args.rebase_time,
        loop=args.loop,
        record_path=args.record,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        max_connection_seconds=args.max_connection_seconds,
        max_incoming_per_second=args.max_incoming_per_second,
        rest_weight_limit=args.rest_weight_limit,
        malformed=args.malformed,
        seed=args.seed,
        control=not args.no_control,
        unlisted=tuple(s.strip().upper() for s in args.unlisted.split(",") if s.strip()),
    )


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(f"tradepipe replay: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if (args.symbols is None) == (not args.files):
        _err("give FILE... or --symbols N (not both)")
        return EXIT_USAGE
    try:
        tape = (
            _generated(args)
            if args.symbols is not None
            else load_tape(args.files, args.symbol, report=_err)
        )
    except (SourceError, ValueError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        Market(tape.symbols, options.unlisted)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not tape.trades:
        _err("no trades in the input files")
        return EXIT_USAGE
    _err(
        f"loaded {len(tape.trades)} trades of {_names(tape.symbols)} from "
        f"{f'{len(args.files)} file(s)' if args.files else 'the generated market'}; "
        f"{tape.rejected} lines rejected, {tape.duplicates} duplicates skipped"
    )
    try:
        asyncio.run(serve(tape, options))
    except OSError as exc:
        _err(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


def _generated(args: argparse.Namespace) -> Tape:
    if args.symbols < 1 or args.minutes < 1 or args.market_rate <= 0 or args.burst_x < 1:
        raise ValueError("--symbols, --minutes, --market-rate must be positive, --burst-x >= 1")
    bursts = Bursts(x=args.burst_x) if args.burst_x > 1 else None
    return market_tape(args.symbols, args.market_rate, args.minutes, args.seed, bursts)


def _names(symbols: list[str]) -> str:
    return ", ".join(symbols) if len(symbols) <= 10 else f"{len(symbols)} symbols"


async def serve(tape: Tape, options: ReplayOptions) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)

    def log(line: str) -> None:
        (_out if line.startswith("replay finished") else _err)(line)

    async with Emulator(tape, options, log=log) as emu:
        _out(f"listening {emu.ws_url} {emu.rest_url}")
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(emu.wait_failed())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, failed):
            task.cancel()
        if failed.done() and not failed.cancelled():
            raise failed.result()  # a bug in the publisher: exit non-zero with its traceback
        _err(f"stopping: {emu.published.count} trades published")
