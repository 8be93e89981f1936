"""``tradepipe produce [--config FILE]``: the daemon, Binance WebSocket -> Kafka.

Exit status: 0 after a clean stop (SIGTERM/SIGINT, everything flushed), 1 when trades could
not be flushed before the time limit or a task crashed, 2 for invalid configuration (also: an
existing topic with fewer partitions than ``kafka.partitions``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tradepipe.commands.signals import stop_on_signals
from tradepipe.config import ConfigError, Settings
from tradepipe.observability import Notifier, configure_logging, watchdog_interval
from tradepipe.producer.kafka import TopicMismatch
from tradepipe.producer.service import Options, serve

HELP = "the daemon: Binance WebSocket -> Kafka"
EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file (TRADEPIPE_* env overrides it)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config, os.environ)
        configure_logging(settings.log.level)
    except (ConfigError, ValueError) as exc:
        print(f"tradepipe produce: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    options = Options(
        notifier=Notifier(os.environ.get("NOTIFY_SOCKET")),
        watchdog_seconds=watchdog_interval(os.environ),
    )
    return asyncio.run(main(settings, options))


async def main(settings: Settings, options: Options) -> int:
    """Signals only set the stop flag; :func:`serve` does the ordered shutdown."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        return await serve(settings, stop, options)
    except* TopicMismatch as group:
        print(f"tradepipe produce: {group.exceptions[0]}", file=sys.stderr)
    return EXIT_CONFIG
