"""``tradepipe replay FILE... [--host H] [--port P] [--speed X]``: serve recorded trades as a
Binance-compatible WebSocket + REST endpoint.

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
from tradepipe.replay.options import ReplayOptions
from tradepipe.replay.server import Emulator
from tradepipe.replay.tape import Tape, load_tape

HELP = "Binance-compatible WebSocket + REST emulator over recorded trades"
EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_PORT = 9443


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ReplayOptions()
    add = parser.add_argument
    add(
        "files", nargs="+", metavar="FILE", help="NDJSON (raw or combined, .gz ok) or data-dump CSV"
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
    try:
        tape = load_tape(args.files, args.symbol, report=_err)
    except SourceError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not tape.trades:
        _err("no trades in the input files")
        return EXIT_USAGE
    _err(
        f"loaded {len(tape.trades)} trades of {', '.join(tape.symbols)} from {len(args.files)} "
        f"file(s); {tape.rejected} lines rejected, {tape.duplicates} duplicates skipped"
    )
    try:
        asyncio.run(serve(tape, options))
    except OSError as exc:
        _err(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    return EXIT_OK


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
