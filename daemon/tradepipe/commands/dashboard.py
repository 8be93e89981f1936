"""``tradepipe dashboard [--db URL] [--listen HOST:PORT] [--config FILE]``: the dashboard alone.

Reads ``trade_minutes`` (read-only) from SQLite (``sqlite:///PATH``) or MySQL
(``mysql://user:password@host:port/db``); defaults come from ``db.url`` and
``dashboard.listen`` in the configuration. Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tradepipe.config import ConfigError, Settings
from tradepipe.dashboard import DashboardServer, open_reader
from tradepipe.observability import configure_logging
from tradepipe.observability.http import split_listen

HELP = "the dashboard alone"
EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="sqlite:///PATH or mysql://... (db.url)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="dashboard.listen (127.0.0.1:8050)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")


async def serve(server: DashboardServer) -> None:
    """Serve until SIGINT or SIGTERM, then stop the server (and close the database)."""
    from tradepipe.commands.signals import stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)
    async with server:
        print(
            f"dashboard: {server.url} (reading {server.reader.where})", file=sys.stderr, flush=True
        )
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config, os.environ)
        db_url = args.db or settings.db.url
        listen = args.listen or settings.dashboard.listen
        split_listen(listen)
        reader = open_reader(db_url)
    except (ConfigError, ValueError) as exc:
        print(f"tradepipe dashboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if (missing := reader.missing()) is not None:
        print(f"tradepipe dashboard: {missing}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log.level)
    try:
        asyncio.run(serve(DashboardServer(reader, listen)))
    except OSError as exc:  # e.g. the port is taken
        print(f"tradepipe dashboard: cannot listen on {listen}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
