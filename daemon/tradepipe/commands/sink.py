"""``tradepipe sink [--config FILE]``: Kafka -> per-minute gzip NDJSON objects in S3.

Exit status: 0 after a clean stop (SIGTERM/SIGINT) that left nothing behind in memory: every
record read is written or in the spool on disk (``spool_kept`` logs those, the next start puts
them); 1 on a fatal error (systemd restarts it; an unusable spool file included), 2 on invalid
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import structlog

from tradepipe.config import ConfigError, Settings, require_objects_target

HELP = "built-in Kafka -> S3 minute objects (alternative to Vector)"
EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(args.config, os.environ)
        require_objects_target(settings)
    except ConfigError as exc:
        print(f"tradepipe sink: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from aiokafka.errors import KafkaError

    from tradepipe.commands.signals import stop_on_signals
    from tradepipe.observability import Notifier, configure_logging, watchdog_interval
    from tradepipe.sink import Options, serve
    from tradepipe.sink.spool import SpoolError

    configure_logging(settings.log.level)
    options = Options(
        notifier=Notifier(os.environ.get("NOTIFY_SOCKET")),
        watchdog_seconds=watchdog_interval(os.environ),
    )

    async def main() -> int:
        """Signals only set the stop flag; :func:`tradepipe.sink.serve` does the ordered
        shutdown."""
        stop = asyncio.Event()
        stop_on_signals(stop)
        return await serve(settings, stop, options)

    try:
        return asyncio.run(main())
    except (OSError, KafkaError, SpoolError) as exc:  # the metrics port taken, Kafka unreachable
        structlog.get_logger("tradepipe.sink").error("sink_failed", error=repr(exc))
        return 1
