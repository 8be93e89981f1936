"""The synchronous database layer: URLs, connections, migrations, the idempotent upsert and
the dashboard's reads (:mod:`.reads`). It is the only code that talks to the database.

No asyncio and no heavy dependencies (pymysql, stamina, sqlite3): the Lambda zip ships it
beside the core. Read :mod:`tradepipe.store.upsert` for the exactness rules.
"""

from tradepipe.store.connection import (
    Connection,
    Connector,
    DeadlineExceeded,
    connect,
    is_transient,
)
from tradepipe.store.migrations import (
    Migration,
    MigrationError,
    NotMigratedError,
    available,
    migrate,
    require_current,
)
from tradepipe.store.minutes import TABLE, fetch_partials, fetch_texts, partial_of
from tradepipe.store.reads import MinuteReads, QueryError
from tradepipe.store.upsert import Store, UpsertResult, upsert_trades
from tradepipe.store.url import DbUrl, DbUrlError, MysqlUrl, SqliteUrl, parse_db_url

__all__ = [
    "TABLE",
    "Connection",
    "Connector",
    "DbUrl",
    "DbUrlError",
    "DeadlineExceeded",
    "Migration",
    "MigrationError",
    "MinuteReads",
    "MysqlUrl",
    "NotMigratedError",
    "QueryError",
    "SqliteUrl",
    "Store",
    "UpsertResult",
    "available",
    "connect",
    "fetch_partials",
    "fetch_texts",
    "is_transient",
    "migrate",
    "parse_db_url",
    "partial_of",
    "require_current",
    "upsert_trades",
]
