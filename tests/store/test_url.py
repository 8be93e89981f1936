"""Database URL parsing: the forms the contract names, and clear errors for the rest."""

from __future__ import annotations

import pytest

from tradepipe.store import DbUrlError, MysqlUrl, SqliteUrl, parse_db_url


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("mysql://u:p@127.0.0.1:33306/db", MysqlUrl("127.0.0.1", 33306, "u", "p", "db")),
        ("mysql://u:p@db.example/x", MysqlUrl("db.example", 3306, "u", "p", "x")),
        ("mariadb://u@h/x", MysqlUrl("h", 3306, "u", "", "x")),
        ("mysql://u:p%40ss%2Fw@h:1/x", MysqlUrl("h", 1, "u", "p@ss/w", "x")),
        (
            "mysql://u:p@h/x?ssl_ca=/opt/rds.pem&connect_timeout=3",
            MysqlUrl("h", 3306, "u", "p", "x", ssl_ca="/opt/rds.pem", connect_timeout=3.0),
        ),
        ("sqlite:///./data/tradepipe.db", SqliteUrl("./data/tradepipe.db")),
        ("sqlite:////var/lib/x.db", SqliteUrl("/var/lib/x.db")),
        ("sqlite:///:memory:", SqliteUrl(":memory:")),
    ],
)
def test_parses(text: str, want: object) -> None:
    assert parse_db_url(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("postgres://u:p@h/x", "unsupported database URL scheme 'postgres'"),
        ("mysql://h/x", "mysql://user:password@host:port/database"),
        ("mysql://u:p@h", "mysql://user:password@host:port/database"),
        ("mysql://u:p@h:notaport/x", "invalid host or port"),
        ("mysql://u:p@h/x?sslmode=on", "unknown MySQL URL option(s): sslmode"),
        ("mysql://u:p@h/x?connect_timeout=soon", "connect_timeout must be a number"),
        ("sqlite://x.db", "sqlite:///relative/path.db"),
        ("sqlite:///", "sqlite:///relative/path.db"),
    ],
)
def test_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(DbUrlError) as info:
        parse_db_url(text)
    assert message in str(info.value)


def test_password_never_printed() -> None:
    url = parse_db_url("mysql://admin:s3cr3t-pw@h:3306/x")
    assert "s3cr3t-pw" not in str(url) and "s3cr3t-pw" not in repr(url)
    assert str(url) == "mysql://admin:***@h:3306/x"
