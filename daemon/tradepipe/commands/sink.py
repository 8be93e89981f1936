"""``tradepipe sink [--config FILE]``: Kafka -> per-minute gzip NDJSON objects in S3.

Exit status: 0 after a clean stop (SIGTERM/SIGINT), 1 on a fatal error (systemd restarts it),
2 on invalid configuration.
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
    from tradepipe.observability import configure_logging
    from tradepipe.sink.service import run as run_sink

    configure_logging(settings.log.level)
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(run_sink(settings, environ=dict(os.environ)))
    except (OSError, KafkaError) as exc:  # e.g. the metrics port is taken, Kafka unreachable
        structlog.get_logger("tradepipe.sink").error("sink_failed", error=repr(exc))
        return 1
