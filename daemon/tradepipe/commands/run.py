"""``tradepipe run [--config FILE] [--source ws://HOST:PORT] [--kafka] [--symbols a,b] [--db URL]``.

The whole pipeline in one process (see :mod:`tradepipe.local.pipeline`): the live Binance feed by
default, or ``--source`` (e.g. ``tradepipe replay``: its REST API is then at http://HOST:PORT)
-> in-process broker -> minute objects under ``local.objects_dir`` -> ``db.url`` (SQLite by
default, migrated automatically) -> the dashboard on ``dashboard.listen``.

Real components by configuration: ``kafka.bootstrap_servers`` set in the file or the
environment (or ``--kafka``) -> Kafka; ``s3.bucket`` (+ ``s3.endpoint_url``) -> S3;
``db.url = mysql://...`` -> MySQL.

Exit status: 0 after a clean stop (Ctrl-C / SIGTERM: everything accepted is flushed through),
1 a stage failed or could not flush, 2 unusable arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from tradepipe.config import ConfigError, Settings

HELP = "the whole pipeline locally, on embedded defaults"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
KAFKA_ENV = "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="TOML configuration file")
    add(
        "--source",
        metavar="URL",
        help="ws://HOST:PORT of a Binance-compatible feed such as `tradepipe replay` "
        "(REST from http://HOST:PORT); default: feed.ws_url / feed.rest_url (live Binance)",
    )
    add(
        "--kafka",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="use real Kafka instead of the in-process broker (default: kafka.bootstrap_servers)",
    )
    add("--symbols", metavar="LIST", help="comma-separated symbols (feed.symbols)")
    add("--db", metavar="URL", help="sqlite:///PATH or mysql://user:password@host:port/db (db.url)")
    add("--dashboard-listen", metavar="HOST:PORT", help="dashboard.listen (127.0.0.1:8050)")
    add("--no-dashboard", action="store_true", help="run the pipeline without the dashboard")


def source_urls(source: str) -> tuple[str, str]:
    """``ws://h:p`` -> (``ws://h:p``, ``http://h:p``); ``wss`` pairs with ``https``."""
    parts = urlsplit(source)
    if parts.scheme not in ("ws", "wss") or not parts.netloc or parts.path.strip("/"):
        raise ConfigError(f"--source {source!r}: expected ws://HOST:PORT (or wss://)")
    rest = "https" if parts.scheme == "wss" else "http"
    return f"{parts.scheme}://{parts.netloc}", f"{rest}://{parts.netloc}"


def kafka_configured(config: str | None, environ: Mapping[str, str]) -> bool:
    """Was ``kafka.bootstrap_servers`` given explicitly (environment or config file)?"""
    if environ.get(KAFKA_ENV, "").strip():
        return True
    if config is None:
        return False
    data = tomllib.loads(Path(config).read_text(encoding="utf-8"))  # already validated
    kafka = data.get("kafka", {})
    return isinstance(kafka, dict) and "bootstrap_servers" in kafka


def settings_of(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Settings, bool]:
    """The configuration with the command line's overrides, validated like the file; and
    whether real Kafka was asked for."""
    env = dict(environ)
    if args.source:
        env["TRADEPIPE_FEED_WS_URL"], env["TRADEPIPE_FEED_REST_URL"] = source_urls(args.source)
    if args.symbols:
        env["TRADEPIPE_FEED_SYMBOLS"] = args.symbols
    if args.db:
        env["TRADEPIPE_DB_URL"] = args.db
    if args.dashboard_listen:
        env["TRADEPIPE_DASHBOARD_LISTEN"] = args.dashboard_listen
    if args.kafka:
        env[KAFKA_ENV] = args.kafka
    settings = Settings.load(args.config, env)
    return settings, args.kafka is not None or kafka_configured(args.config, env)


def run(args: argparse.Namespace) -> int:
    try:
        settings, kafka = settings_of(args, os.environ)
        from tradepipe.store import DbUrlError, parse_db_url

        try:
            parse_db_url(settings.db.url)
        except DbUrlError as exc:
            raise ConfigError(f"db.url: {exc}") from None
    except ConfigError as exc:
        print(f"tradepipe run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from tradepipe.commands.signals import stop_on_signals
    from tradepipe.local.pipeline import Plan, Running, serve
    from tradepipe.observability import configure_logging

    configure_logging(settings.log.level)
    plan = Plan(kafka=kafka, dashboard=not args.no_dashboard)

    def ready(running: Running) -> None:
        if running.dashboard is not None:
            print(f"dashboard: {running.dashboard.url}", file=sys.stderr, flush=True)

    async def main() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        return await serve(settings, stop, plan, on_ready=ready)

    try:
        return asyncio.run(main())
    except OSError as exc:  # e.g. the dashboard's or the metrics' port is taken
        print(f"tradepipe run: {exc}", file=sys.stderr)
        return EXIT_FAILED
