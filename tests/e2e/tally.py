"""The independent tally the pipeline's rows are judged against.

Two oracles over the emulator's ``--record`` file (every trade it published, as served: with
``--rebase-time`` the times are the served ones, which is what the pipeline sees):

1. ``tradepipe aggregate RECORD`` run as a command: the rows must equal it, every column.
2. Plain sums computed here with ``json`` and ``Decimal`` only (no tradepipe code): per symbol
   and side the number of aggTrades, of underlying trades (``l - f + 1``), the base quantity
   and the quote amount (``p * q``). The rows' totals must equal them.

And the record itself is checked against the emulator's input files: the same (symbol, id)
set with the same price, quantity, trade ids and side, so sums over the record are the input's.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tradepipe.core import ROW_COLUMNS

from .processes import ROOT, TRADEPIPE

Side = tuple[str, str]  # (symbol, "b" | "s")


@dataclass
class Sums:
    count: int = 0
    trades: int = 0
    base: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)

    def add(self, count: int, trades: int, base: Decimal, quote: Decimal) -> None:
        self.count += count
        self.trades += trades
        self.base += base
        self.quote += quote


def _lines(path: Path) -> Iterable[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for line in f:
            if line.strip():
                yield line


def _events(path: Path) -> Iterable[dict[str, object]]:
    for line in _lines(path):
        obj = json.loads(line)
        yield obj.get("data", obj) if "stream" in obj else obj


def input_trades(paths: Sequence[Path]) -> dict[tuple[str, int], tuple[str, str, int, int, bool]]:
    """(symbol, a) -> (p, q, f, l, m) of every trade in the input files, as written there."""
    out: dict[tuple[str, int], tuple[str, str, int, int, bool]] = {}
    for path in paths:
        for e in _events(path):
            key = (str(e["s"]), int(e["a"]))  # type: ignore[call-overload]
            out[key] = (str(e["p"]), str(e["q"]), int(e["f"]), int(e["l"]), bool(e["m"]))  # type: ignore[call-overload]
    return out


def tally(record: Path) -> dict[Side, Sums]:
    """Sums per (symbol, side) over the record: ``m`` true = the buyer was the maker = a sell."""
    out: dict[Side, Sums] = {}
    seen: set[tuple[str, int]] = set()
    for e in _events(record):
        key = (str(e["s"]), int(e["a"]))  # type: ignore[call-overload]
        assert key not in seen, f"the record holds {key} twice"
        seen.add(key)
        p, q = Decimal(str(e["p"])), Decimal(str(e["q"]))
        trades = int(e["l"]) - int(e["f"]) + 1  # type: ignore[call-overload]
        side = (key[0], "s" if e["m"] is True else "b")
        out.setdefault(side, Sums()).add(1, trades, q, p * q)
    return out


def row_sums(rows: Sequence[tuple[str, ...]]) -> dict[Side, Sums]:
    """The same sums read off stored rows (contract text)."""
    col = {name: i for i, name in enumerate(ROW_COLUMNS)}
    out: dict[Side, Sums] = {}
    for r in rows:
        for side in ("b", "s"):
            count = int(r[col[f"total_count_{side}"]])
            if count == 0:
                continue
            out.setdefault((r[col["symbol"]], side), Sums()).add(
                count,
                int(r[col[f"trades_{side}"]]),
                Decimal(r[col[f"total_btc_{side}"]]),
                Decimal(r[col[f"total_usd_{side}"]]),
            )
    return out


def record_matches_input(record: Path, inputs: Sequence[Path]) -> list[str]:
    """Differences between the published trades and the input files (empty when equal)."""
    want = input_trades(inputs)
    got = input_trades([record])
    problems = []
    missing, extra = set(want) - set(got), set(got) - set(want)
    if missing:
        problems.append(f"{len(missing)} input trades never published, e.g. {sorted(missing)[:5]}")
    if extra:
        problems.append(f"{len(extra)} published trades not in the input, e.g. {sorted(extra)[:5]}")
    changed = [k for k in set(want) & set(got) if want[k] != got[k]]
    if changed:
        problems.append(f"{len(changed)} trades published with other values, e.g. {changed[:5]}")
    return problems


async def aggregate_rows(files: Sequence[Path]) -> list[tuple[str, ...]]:
    """``tradepipe aggregate FILES`` as rows of contract text."""
    proc = await asyncio.create_subprocess_exec(
        *TRADEPIPE, "aggregate", *map(str, files),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"tradepipe aggregate exited {proc.returncode}: {err.decode()}"
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert tuple(rows[0]) == ROW_COLUMNS
    return [tuple(r) for r in rows[1:]]


def row_diff(got: Sequence[tuple[str, ...]], want: Sequence[tuple[str, ...]]) -> str:
    """A readable account of how two row lists differ (empty when equal)."""
    if list(got) == list(want):
        return ""
    g = {(r[0], r[1]): r for r in got}
    w = {(r[0], r[1]): r for r in want}
    lines = [f"{len(got)} rows stored, {len(want)} expected"]
    for key in sorted(set(g) | set(w)):
        if key not in g:
            lines.append(f"  missing row {key}")
        elif key not in w:
            lines.append(f"  unexpected row {key}")
        elif g[key] != w[key]:
            diffs = [
                f"{name}: {a} != {b}"
                for name, a, b in zip(ROW_COLUMNS, g[key], w[key], strict=True)
                if a != b
            ]
            lines.append(f"  {key}: " + "; ".join(diffs))
    return "\n".join(lines[:40])
