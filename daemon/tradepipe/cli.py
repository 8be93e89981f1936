"""The ``tradepipe`` console script: one sub-command per module in :mod:`tradepipe.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status). Modules are imported only when their command runs, so
``tradepipe aggregate`` never pays for importing Kafka or AWS clients. A command whose extra
is not installed (:mod:`tradepipe.extras`) stops first with one line naming it, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tradepipe import __version__
from tradepipe.extras import missing_extra

COMMANDS: dict[str, str] = {
    "produce": "the daemon: Binance WebSocket -> Kafka",
    "sink": "built-in Kafka -> S3 minute objects (alternative to Vector)",
    "aggregate": "offline: trade files -> per-minute rows on stdout",
    "migrate": "apply migrations/ to MySQL or SQLite",
    "load": "aggregate files and upsert the rows (the Lambda's code path)",
    "export": "the rows of a range as CSV or Parquet, exact decimals",
    "replay": "Binance-compatible WebSocket + REST emulator over recorded trades",
    "run": "the whole pipeline locally, on embedded defaults",
    "dashboard": "the dashboard alone",
    "verify": "prove stored minutes against the exchange's klines and id continuity; --repair",
}

EXIT_USAGE = 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradepipe",
        description="Binance aggTrades -> Kafka -> S3 -> exact per-minute rows in MySQL.",
    )
    parser.add_argument("--version", action="version", version=f"tradepipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f"tradepipe.commands.{name}").add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_in if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    elif (needs := missing_extra(command)) is not None:
        print(needs, file=sys.stderr)
        return EXIT_USAGE
    args = build_parser(command).parse_args(args_in)
    module = importlib.import_module(f"tradepipe.commands.{args.command}")
    try:
        status: int = module.run(args)
    except BrokenPipeError:  # e.g. `tradepipe aggregate ... | head`: not an error
        sys.stderr.close()
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
