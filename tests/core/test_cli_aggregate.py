"""`tradepipe aggregate` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import csv
import gc
import gzip
import io
import random
import subprocess
import sys
import warnings
from decimal import Decimal
from pathlib import Path

import msgspec
from tests.conftest import unavailable
from tests.core.fuzzing import bad_lines, encode, valid_event
from tests.core.helpers import BASE_T, line

from tradepipe.core import ROW_COLUMNS, Trade, aggregate, rows_of

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"


def tp(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradepipe.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_good_file_exit_0_csv_in_contract_order(tmp_path: Path) -> None:
    f = tmp_path / "t.ndjson"
    f.write_bytes(b"\n".join([line(a=2, s="ETHUSDT", T=BASE_T + 60_000), line(a=1)]) + b"\n")
    out = tp("aggregate", f)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert tuple(rows[0]) == ROW_COLUMNS
    assert [(r[0], r[1]) for r in rows[1:]] == [
        ("BTCUSDT", "2024-11-24 00:00:00"),
        ("ETHUSDT", "2024-11-24 00:01:00"),
    ]
    assert "2 rows from 2 trades; 0 lines rejected" in out.stderr


def test_bad_lines_exit_3_reported_and_copied_verbatim(tmp_path: Path) -> None:
    bad1, bad2 = b'{"e":"aggTrade","a":', line(a=3, q="0")
    f = tmp_path / "mixed.ndjson.gz"
    f.write_bytes(gzip.compress(b"\n".join([line(a=1), bad1, line(a=2), bad2]) + b"\n"))
    rejects = tmp_path / "rejects.ndjson"
    out = tp("aggregate", f, "--format", "jsonl", "--rejects", rejects)
    assert out.returncode == 3
    assert f"{f}:2: rejected: invalid_json" in out.stderr
    assert f"{f}:4: rejected: not_positive" in out.stderr
    assert "2 lines rejected (invalid_json=1, not_positive=1)" in out.stderr
    assert rejects.read_bytes() == bad1 + b"\n" + bad2 + b"\n"
    (row,) = [msgspec.json.decode(x) for x in out.stdout.splitlines()]
    assert row["total_count_s"] == 2 and row["avg_b"] is None and row["avg_s"] == "97123.45000000"


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    assert tp("aggregate", tmp_path / "missing.ndjson").returncode == 2
    trunc = tmp_path / "t.ndjson.gz"
    trunc.write_bytes(gzip.compress(b"\n".join(line(a=i) for i in range(2000)))[:-40])
    out = tp("aggregate", trunc)
    assert out.returncode == 2 and "truncated" in out.stderr
    nosym = tmp_path / "trades.csv"
    nosym.write_text("1,1.0,1.0,1,1,1639474150066,True\n")
    out = tp("aggregate", nosym)
    assert out.returncode == 2 and "--symbol" in out.stderr
    assert tp("aggregate", nosym, "--symbol", "BTCUSDT").returncode == 0
    assert tp("aggregate", nosym, "--format", "xml").returncode == 2


def test_csv_with_header_equals_ndjson(tmp_path: Path) -> None:
    csv_file = tmp_path / "BTCUSDT-aggTrades-2024-11-24.csv"
    csv_file.write_text(
        "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
        "is_buyer_maker,is_best_match\n"
        f"3300000000,97123.45000000,0.01200000,4200000000,4200000002,{(BASE_T + 3) * 1000},"
        "True,True\n"
    )
    nd = tmp_path / "x.ndjson"
    nd.write_bytes(line() + b"\n")
    assert tp("aggregate", csv_file).stdout == tp("aggregate", nd).stdout


def test_real_recordings_from_several_files_count_each_trade_once() -> None:
    if not DATA.is_dir():
        unavailable("../shared/data is absent")
    btc = DATA / "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson"
    once = tp("aggregate", btc)
    twice = tp("aggregate", btc, btc)
    assert once.returncode == twice.returncode == 0
    assert once.stdout == twice.stdout
    rows = list(csv.DictReader(io.StringIO(once.stdout)))
    assert sum(int(r["total_count_b"]) + int(r["total_count_s"]) for r in rows) == 1227
    assert sum(int(r["trades_b"]) + int(r["trades_s"]) for r in rows) == 1391


def test_unreadable_later_file_fails_before_output_and_leaks_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good.ndjson"
    good.write_bytes(line() + b"\n")
    out = tp("aggregate", good, tmp_path / "missing.ndjson")
    assert out.returncode == 2 and out.stdout == ""
    assert "ResourceWarning" not in out.stderr


def test_gzip_input_closes_its_file(tmp_path: Path) -> None:
    from tradepipe.core import read_file

    f = tmp_path / "t.ndjson.gz"
    f.write_bytes(gzip.compress(line() + b"\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        assert len(list(read_file(f))) == 1
        gc.collect()


def _independent_rows(events: list[dict[str, object]]) -> list[tuple[str, ...]]:
    """The rows of valid events, the Trades built straight from their values (no parser)."""
    trades = [
        Trade(str(e["s"]), int(e["a"]), Decimal(str(e["p"])), Decimal(str(e["q"])),  # type: ignore[call-overload]
              int(e["f"]), int(e["l"]), int(e["T"]), bool(e["m"]))  # type: ignore[call-overload]
        for e in events
    ]  # fmt: skip
    return [row.texts() for row in rows_of(aggregate(trades).values())]


def test_thousands_of_fuzzed_lines_exit_3_with_the_exact_rows_of_the_valid_ones(
    tmp_path: Path,
) -> None:
    rng = random.Random(4)
    valid = [
        valid_event(a=a, t=BASE_T + rng.randrange(4 * 60_000), p=f"{rng.randrange(1, 10**6)}.5")
        for a in rng.sample(range(10**6), 1500)
    ]
    bad = bad_lines(seed=9, count=3000)
    lines = [encode(e) for e in valid] + bad
    rng.shuffle(lines)
    f = tmp_path / "mixed.ndjson"
    f.write_bytes(b"\xef\xbb\xbf\n" + b"\n".join(lines) + b"\n")  # a BOM and a blank first line
    rejects = tmp_path / "rejects.ndjson"
    out = tp("aggregate", f, "--rejects", rejects)
    assert out.returncode == 3, out.stderr[-3000:]
    assert [tuple(r) for r in csv.reader(io.StringIO(out.stdout))][1:] == _independent_rows(valid)
    assert "from 1500 trades; 3000 lines rejected" in out.stderr
    assert sorted(rejects.read_bytes().splitlines()) == sorted(b[:65536] for b in bad)
    assert "Traceback" not in out.stderr


def test_a_foreign_first_line_does_not_make_ndjson_csv(tmp_path: Path) -> None:
    f = tmp_path / "t.ndjson"
    for head in (b"hello world", b"\xef\xbb\xbf" + line(a=9), b"   ", b"[1,2]"):
        f.write_bytes(head + b"\n" + line(a=1) + b"\n" + line(a=2) + b"\n")
        out = tp("aggregate", f, "--format", "jsonl")
        assert out.returncode in (0, 3), out.stderr
        (row,) = [msgspec.json.decode(x) for x in out.stdout.splitlines()]
        assert row["total_count_s"] == (3 if head.endswith(b"}") else 2), head
