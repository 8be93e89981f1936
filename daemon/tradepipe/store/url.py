"""Database URLs: ``mysql://user:password@host:port/db`` and ``sqlite:///path``.

- ``mysql://`` (also ``mariadb://``): user and password are percent-decoded, so a password
  holding ``@`` or ``/`` is written ``%40``/``%2F``; the port defaults to 3306; the database
  name is required. Query options: ``ssl_ca=/path/to/bundle.pem`` (TLS to RDS, verifying the
  server) and ``connect_timeout=SECONDS``.
- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (SQLAlchemy's convention) and
  ``sqlite:///:memory:``.

``str()`` of a parsed URL never shows the password: it is what logs and errors print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

_MYSQL_OPTIONS = frozenset({"ssl_ca", "connect_timeout"})


class DbUrlError(ValueError):
    """A database URL that cannot be used; the message never contains the password."""


@dataclass(frozen=True, slots=True)
class MysqlUrl:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    ssl_ca: str | None = None
    connect_timeout: float = 10.0

    dialect = "mysql"

    def __str__(self) -> str:
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True, slots=True)
class SqliteUrl:
    path: str

    dialect = "sqlite"

    def __str__(self) -> str:
        return f"sqlite:///{self.path}"


DbUrl = MysqlUrl | SqliteUrl


def parse_db_url(text: str) -> DbUrl:
    """Parse and validate; raises :class:`DbUrlError` naming what is wrong."""
    text = text.strip()
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise DbUrlError("a SQLite URL is sqlite:///relative/path.db or sqlite:////abs/path")
        return SqliteUrl(text[len("sqlite:///") :])
    try:
        parts = urlsplit(text)
        port = parts.port or 3306
    except ValueError:
        raise DbUrlError("the database URL has an invalid host or port") from None
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        raise DbUrlError(
            f"unsupported database URL scheme {parts.scheme!r}: use mysql://user:password@"
            "host:port/db or sqlite:///path"
        )
    database = parts.path.lstrip("/")
    if not parts.hostname or not parts.username or not database or "/" in database:
        raise DbUrlError("a MySQL URL is mysql://user:password@host:port/database")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - _MYSQL_OPTIONS
    if unknown:
        raise DbUrlError(f"unknown MySQL URL option(s): {', '.join(sorted(unknown))}")
    try:
        timeout = float(options.get("connect_timeout", "10"))
    except ValueError:
        raise DbUrlError("connect_timeout must be a number of seconds") from None
    return MysqlUrl(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        database=unquote(database),
        ssl_ca=options.get("ssl_ca") or None,
        connect_timeout=timeout,
    )
