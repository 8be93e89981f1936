"""``tradepipe export`` on SQLite and MariaDB: every column, exact, read back as a notebook
would (pyarrow, pandas, DuckDB) and compared with ``tradepipe aggregate`` over the same trades."""

from __future__ import annotations

import csv
import fcntl
import functools
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.store.helpers import ETH_FILE, expected, migrated, real_trades

from tradepipe.cli import main
from tradepipe.core import FLOW_COLUMNS, ROW_COLUMNS, Trade, read_file
from tradepipe.core.rows import DECIMAL_COLUMNS, INT_COLUMNS, QUOTE_COLUMNS
from tradepipe.store import Store, connect, parse_db_url
from tradepipe.store.ranges import RowRange, iter_pages

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "btcusdt-aggtrades-60m.ndjson.gz"


@functools.cache
def trades() -> tuple[Trade, ...]:
    """60 minutes of BTCUSDT (the shipped sample) and 2 of ETHUSDT (recorded)."""
    sample = [t for t in read_file(SAMPLE) if isinstance(t, Trade)]
    return (*sample, *real_trades(ETH_FILE))


@pytest.fixture
def loaded(db_url: str) -> str:
    Store(db_url).upsert(list(trades()))
    return db_url


def want_rows(
    symbols: tuple[str, ...] = (), since: str = "", until: str = "~"
) -> list[tuple[str, ...]]:
    return [
        r for r in expected(trades()) if (not symbols or r[0] in symbols) and since <= r[1] < until
    ]


def export(url: str, tmp_path: Path, fmt: str, *extra: str) -> Path:
    out = tmp_path / f"rows.{fmt}"
    assert main(["export", "--db", url, "--format", fmt, "--output", str(out), *extra]) == 0
    return out


def csv_rows(path: Path) -> list[tuple[str, ...]]:
    rows = list(csv.reader(io.StringIO(path.read_text("utf-8"))))
    assert tuple(rows[0]) == ROW_COLUMNS
    return [tuple(r) for r in rows[1:]]


def as_text(column: str, value: object) -> str:
    """A value read back from Parquet -> the contract's text, to compare exactly."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if column == "timestamp":
        return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]
    if column in DECIMAL_COLUMNS:
        assert isinstance(value, Decimal), (column, value)  # never a float
        places = 16 if column in QUOTE_COLUMNS else 8
        return format(value.quantize(Decimal(1).scaleb(-places)), "f")
    return str(value)


def test_csv_is_aggregates_output(loaded: str, tmp_path: Path) -> None:
    assert csv_rows(export(loaded, tmp_path, "csv")) == want_rows()
    assert len(want_rows()) > 2


def test_parquet_has_exact_decimals_read_back_by_pyarrow_pandas_and_duckdb(
    loaded: str, tmp_path: Path
) -> None:
    path = export(loaded, tmp_path, "parquet")
    table = pq.read_table(path)
    assert tuple(table.column_names) == ROW_COLUMNS
    for name in DECIMAL_COLUMNS:
        t = table.schema.field(name).type
        assert pa.types.is_decimal(t) and t.scale == (16 if name in QUOTE_COLUMNS else 8), name
    for name in INT_COLUMNS:
        assert table.schema.field(name).type == pa.int64()
    want = want_rows()
    got_arrow = [
        tuple(as_text(c, v) for c, v in zip(ROW_COLUMNS, row.values(), strict=True))
        for row in table.to_pylist()
    ]
    assert got_arrow == want
    frame = pd.read_parquet(path)
    got_pandas = [
        tuple(as_text(c, v) for c, v in zip(ROW_COLUMNS, rec, strict=True))
        for rec in frame.itertuples(index=False)
    ]
    assert got_pandas == want
    con = duckdb.connect()
    res = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY symbol, timestamp")
    got_duck = [
        tuple(as_text(c, v) for c, v in zip(ROW_COLUMNS, rec, strict=True))
        for rec in res.fetchall()
    ]
    assert got_duck == want
    # a sum in DuckDB is exact too: the BTCUSDT quote volume equals the Decimal tally
    (total,) = con.execute(
        f"SELECT SUM(total_usd_b) FROM read_parquet('{path}') WHERE symbol = 'BTCUSDT'"
    ).fetchone()  # type: ignore[misc]
    assert total == sum(
        (t.price * t.quantity for t in trades() if t.symbol == "BTCUSDT" and not t.buyer_is_maker),
        Decimal(0),
    )


def test_ranges_symbols_and_half_open_times(loaded: str, tmp_path: Path) -> None:
    minutes = sorted({r[1] for r in want_rows(("BTCUSDT",))})
    since, until = minutes[1], minutes[-1]
    out = export(
        loaded, tmp_path, "csv", "--symbol", "btcusdt", "--since", since.replace(" ", "T") + "Z",
        "--until", until,
    )  # fmt: skip
    got = csv_rows(out)
    assert got == want_rows(("BTCUSDT",), since, until)
    assert [r[1] for r in got] == minutes[1:-1]  # since inclusive, until exclusive
    out = export(loaded, tmp_path, "csv", "--symbol", "ETHUSDT", "BTCUSDT", "--since", "2000-01-01")
    assert csv_rows(out) == want_rows()


def test_pages_read_every_row_once(loaded: str) -> None:
    conn = connect(parse_db_url(loaded), read_only=True)
    try:
        for page in (1, 2, 3, 1000):
            rows = [r for p in iter_pages(conn, RowRange(), page=page) for r in p]
            assert [r[:2] for r in rows] == [r[:2] for r in want_rows()], page
    finally:
        conn.close()


def test_unknown_order_flow_is_null(loaded: str, tmp_path: Path) -> None:
    conn = connect(parse_db_url(loaded))
    try:
        with conn.transaction():  # as a row stored before migration 0003
            sets = ", ".join(f"{conn.quote(c)} = NULL" for c in FLOW_COLUMNS)
            conn.query(f"UPDATE trade_minutes SET {sets} WHERE symbol = {conn.ph}", ("ETHUSDT",))
    finally:
        conn.close()
    table = pq.read_table(export(loaded, tmp_path, "parquet")).to_pylist()
    eth = [r for r in table if r["symbol"] == "ETHUSDT"]
    assert eth and all(r[c] is None for r in eth for c in FLOW_COLUMNS)
    assert all(r["max_usd_b"] is not None for r in table if r["symbol"] == "BTCUSDT")
    rows = csv_rows(export(loaded, tmp_path, "csv", "--symbol", "ETHUSDT"))
    n = len(ROW_COLUMNS) - len(FLOW_COLUMNS)
    assert rows == [(*r[:n], *[""] * len(FLOW_COLUMNS)) for r in want_rows(("ETHUSDT",))]


def test_a_value_too_wide_for_parquet_fails_and_leaves_no_file(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    price, qty = Decimal(10**12), Decimal(10**11)  # notional 1e23: 24 integer digits > 22
    t = real_trades()[0]
    Store(db_url).upsert([Trade(t.symbol, 1, price, qty, 1, 1, t.time_ms, False)])
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "rows.parquet"
    argv = ["export", "--db", db_url, "--format", "parquet", "--output", str(out)]
    assert main(argv) == 1
    assert "total_usd_b" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []  # neither the file nor its .partial
    assert main([*argv[:4], "csv", "--output", str(out)]) == 0  # CSV holds any width exactly
    assert csv_rows(out)[0][6] == "1" + "0" * 23 + ".0000000000000000"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not a time"),
        (["--since", "2026-01-02", "--until", "2026-01-01"], "is not before --until"),
        (["--until", "2026-01-01T00:00+02:00"], "give the time in UTC"),
        (["--symbol", "BTC-USDT"], "is not a symbol"),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    argv = ["export", "--db", f"sqlite:///{tmp_path}/none.db", "--format", "csv"]
    assert main([*argv, "--output", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    loaded = migrated(f"sqlite:///{tmp_path}/bar.db")  # the bar does not depend on the dialect
    Store(loaded).upsert(list(trades()))
    argv = [sys.executable, "-m", "tradepipe.cli", "export", "--db", loaded, "--format", "csv"]
    plain = subprocess.run(
        [*argv, "--output", str(tmp_path / "a.csv")], capture_output=True, text=True, check=True
    )
    assert "rows/s" not in plain.stderr and " rows to " in plain.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.run(
        [*argv, "--output", str(tmp_path / "b.csv")], stderr=follower, stdout=subprocess.DEVNULL,
        check=True,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.returncode == 0
    total = len(want_rows())
    assert f"{total}/{total}".encode() in seen  # tqdm's final "n/total" on the terminal
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
