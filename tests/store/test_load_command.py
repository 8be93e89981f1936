"""``tradepipe load``: the Lambda's code path from the command line, checked against
``tradepipe aggregate`` over the same files."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest
from tests.core.fuzzing import bad_lines
from tests.store.helpers import BINANCE, BTC_FILE, data_file, expected, ndjson, real_trades

from tradepipe.cli import main
from tradepipe.store import connect, fetch_texts, parse_db_url


def stored(url: str) -> list[tuple[str, ...]]:
    conn = connect(parse_db_url(url))
    try:
        return fetch_texts(conn)
    finally:
        conn.close()


def aggregate_cli(files: list[str], capsys: pytest.CaptureFixture[str]) -> list[tuple[str, ...]]:
    capsys.readouterr()
    main(["aggregate", *files])
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    return [tuple(r) for r in rows[1:]]


def test_load_all_recorded_data_equals_aggregate(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data_file(BTC_FILE)
    files = sorted(str(p) for p in BINANCE.glob("*.aggTrade.ndjson")) + sorted(
        str(p) for p in BINANCE.glob("*aggTrades*.csv")
    )
    assert main(["load", *files, "--db", db_url, "--batch", "500"]) == 0
    err = capsys.readouterr().err
    assert " new, 0 already stored" in err
    want = aggregate_cli(files, capsys)
    assert len(want) > 10
    assert stored(db_url) == want
    # the same files again: nothing new, rows unchanged
    assert main(["load", *files, "--db", db_url]) == 0
    assert ", 0 new, " in capsys.readouterr().err
    assert stored(db_url) == want


def test_split_files_loaded_in_reverse_order(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trades = real_trades()
    parts = [trades[:300], trades[250:800], trades[700:]]  # overlapping pieces
    names = []
    for i, part in enumerate(parts):
        path = tmp_path / f"part{i}.ndjson"
        path.write_bytes(ndjson(part))
        names.append(str(path))
    for name in reversed(names):
        assert main(["load", name, "--db", db_url, "--batch", "97"]) == 0
    assert stored(db_url) == aggregate_cli([str(data_file(BTC_FILE))], capsys)


def test_unmigrated_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    btc = str(data_file(BTC_FILE))
    assert main(["load", btc, "--db", url]) == 1
    assert "run `tradepipe migrate --db URL` first" in capsys.readouterr().err
    assert main(["load", btc, "--db", url, "--migrate"]) == 0
    assert stored(url) == aggregate_cli([btc], capsys)


def test_bad_lines_rejected_good_lines_loaded(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trades = real_trades()[:50]
    bad = b'{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"-1"}'
    body = ndjson(trades[:25]) + bad + b"\nnot json\n" + ndjson(trades[25:])
    src = tmp_path / "mixed.ndjson"
    src.write_bytes(body)
    rejects = tmp_path / "rejects.ndjson"
    assert main(["load", str(src), "--db", db_url, "--rejects", str(rejects)]) == 3
    err = capsys.readouterr().err
    assert "mixed.ndjson:26: rejected:" in err and "2 lines rejected" in err
    assert rejects.read_bytes() == bad + b"\nnot json\n"
    clean = tmp_path / "clean.ndjson"
    clean.write_bytes(ndjson(trades))
    assert stored(db_url) == aggregate_cli([str(clean)], capsys)


def test_missing_file_loads_nothing(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(data_file(BTC_FILE)), "/nonexistent.ndjson", "--db", db_url]) == 2
    assert "/nonexistent.ndjson: cannot read" in capsys.readouterr().err
    assert stored(db_url) == []


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal() -> None:
    from tradepipe.commands.load import Progress

    tty, pipe = _Tty(), io.StringIO()
    for out in (tty, pipe):
        progress = Progress(out, total_files=2, enabled=True)
        progress.files, progress.trades, progress.added = 1, 12_345, 12_000
        progress.update()
        progress.done()
    assert tty.getvalue().startswith("\rloading: file 1/2, 12,345 trades read, 12,000 new")
    assert tty.getvalue().endswith("\n")
    assert pipe.getvalue() == ""


def test_load_of_a_file_full_of_fuzzed_lines_exits_3_with_the_valid_rows(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trades = real_trades()
    bad = bad_lines(seed=31, count=2000)
    lines = ndjson(trades).splitlines() + bad
    random.Random(8).shuffle(lines)
    path = tmp_path / "fuzzed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rejects = tmp_path / "rejects.ndjson"
    assert main(["load", str(path), "--db", db_url, "--rejects", str(rejects)]) == 3
    assert "2000 lines rejected" in capsys.readouterr().err
    assert stored(db_url) == expected(trades)
    assert len(rejects.read_bytes().splitlines()) == 2000
