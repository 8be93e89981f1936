"""``tradepipe run [--config FILE] [--source ws://HOST:PORT] [--kafka] [--symbols a,b] [--db URL]``.

The whole pipeline in one process (see :mod:`tradepipe.local.pipeline`): the live Binance feed by
default, or ``--source`` (e.g. ``tradepipe replay``: its REST API is then at http://HOST:PORT)
-> in-process broker -> minute objects under ``sink.objects_dir`` -> ``db.url`` (SQLite by
default, migrated automatically) -> the dashboard on ``dashboard.listen``.

Real components by configuration, one explicit key each: ``local.broker = "kafka"`` (or
``--kafka [HOST:PORT]``) -> Kafka at ``kafka.bootstrap_servers``; ``sink.objects = "s3"`` -> S3
(``s3.bucket``, ``s3.endpoint_url``); ``db.url = mysql://...`` -> MySQL. The settings are loaded
on :data:`~tradepipe.config.RUN_DEFAULTS` (sink grace 1 s, objects in a folder), then the file,
the environment and the command line.

Exit status: 0 after a clean stop (Ctrl-C / SIGTERM: everything accepted is flushed through),
1 a stage failed or could not flush, 2 unusable arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

from tradepipe.config import RUN_DEFAULTS, ConfigError, Settings, redact, require_objects_target

HELP = "the whole pipeline locally, on embedded defaults"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
        help="use real Kafka instead of the in-process broker: local.broker = kafka "
        "(HOST:PORT sets kafka.bootstrap_servers)",
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


def settings_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """:data:`RUN_DEFAULTS`, the file, the environment, then the command line (it sets the
    same keys as the environment would), validated like the file."""
    env = dict(environ)
    if args.source:
        env["TRADEPIPE_FEED_WS_URL"], env["TRADEPIPE_FEED_REST_URL"] = source_urls(args.source)
    if args.symbols:
        env["TRADEPIPE_FEED_SYMBOLS"] = args.symbols
    if args.db:
        env["TRADEPIPE_DB_URL"] = args.db
    if args.dashboard_listen:
        env["TRADEPIPE_DASHBOARD_LISTEN"] = args.dashboard_listen
    if args.kafka is not None:
        env["TRADEPIPE_LOCAL_BROKER"] = "kafka"
    if args.kafka:
        env["TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS"] = args.kafka
    settings = Settings.load(args.config, env, defaults=RUN_DEFAULTS)
    require_objects_target(settings)
    return settings


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_of(args, os.environ)
        from tradepipe.store import DbUrlError, parse_db_url

        try:
            parse_db_url(settings.db.url)
        except DbUrlError as exc:
            raise ConfigError(f"db.url: {exc}") from None
    except ConfigError as exc:
        print(f"tradepipe run: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    from tradepipe.commands.signals import stop_on_signals
    from tradepipe.local.pipeline import Plan, Running, serve
    from tradepipe.observability import configure_logging
    from tradepipe.producer.kafka import TopicMismatch

    configure_logging(settings.log.level)
    plan = Plan(dashboard=not args.no_dashboard)

    def ready(running: Running) -> None:
        if running.dashboard is not None:
            print(f"dashboard: {running.dashboard.url}", file=sys.stderr, flush=True)

    async def main() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        try:
            return await serve(settings, stop, plan, on_ready=ready)
        except* TopicMismatch as group:  # local.broker = "kafka": as `tradepipe produce` does
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):  # the stages' task groups nest
                first = first.exceptions[0]
            print(f"tradepipe run: {first}", file=sys.stderr)
        return EXIT_USAGE

    try:
        return asyncio.run(main())
    except OSError as exc:  # e.g. the dashboard's or the metrics' port is taken
        print(f"tradepipe run: {exc}", file=sys.stderr)
        return EXIT_FAILED
