"""``tradepipe load`` of the sink's own objects, in both layouts: the recorded BTCUSDT, ETHUSDT
and DOTUSDT trades cut into objects by the real batcher (per minute: one object holding all
three symbols' trades of a minute; per symbol: one per symbol and minute), written under their
keys as a folder sink would, then loaded; the rows must equal ``tradepipe aggregate`` over the
recorded files, and loading the objects again changes nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from tests.store.helpers import data_file

from tradepipe.cli import main
from tradepipe.core import Layout, parse_event, parse_key
from tradepipe.sink import PartitionBatcher
from tradepipe.store import connect, fetch_texts, parse_db_url

FILES = [f"cryptofeed-BINANCE-ee25be.{s}usdt.aggTrade.ndjson" for s in ("btc", "eth", "dot")]


def write_objects(root: Path, layout: Layout) -> list[Path]:
    """The recorded trades in trade-time order through one partition's batcher, each object
    written at its key under ``root``."""
    raw = [x for name in FILES for x in data_file(name).read_bytes().splitlines() if x.strip()]
    records = sorted(((parse_event(x), x) for x in raw), key=lambda p: (p[0].time_ms, p[0].symbol))
    batcher = PartitionBatcher("aggtrades", 0, 5_000, 200_000, None, layout)
    flushes = [
        f for i, (t, x) in enumerate(records) for f in batcher.add(i, t.symbol, t.time_ms, x)
    ]
    last = batcher.drain()
    paths = []
    for flush in [*flushes, *([last] if last else [])]:
        for batch in flush.batches:
            path = root / batch.key("trades")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(batch.body())
            paths.append(path)
    return paths


@pytest.mark.parametrize("layout", list(Layout))
def test_load_of_sink_objects_equals_aggregate(
    layout: Layout, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = write_objects(tmp_path / "objects", layout)
    keys = [parse_key(p.relative_to(tmp_path / "objects").as_posix()) for p in objects]
    assert {k.layout for k in keys} == {layout}
    # 2 minutes (20:03, 20:04) of 3 symbols
    assert len(objects) == (2 if layout is Layout.PER_MINUTE else 6)
    assert main(["load", *map(str, objects), "--db", db_url]) == 0
    capsys.readouterr()
    main(["aggregate", *(str(data_file(name)) for name in FILES)])
    want = [tuple(r) for r in list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]]
    assert {r[0] for r in want} == {"BTCUSDT", "ETHUSDT", "DOTUSDT"}
    conn = connect(parse_db_url(db_url))
    try:
        assert fetch_texts(conn) == want
        assert main(["load", *map(str, objects), "--db", db_url]) == 0
        assert ", 0 new, " in capsys.readouterr().err
        assert fetch_texts(conn) == want
    finally:
        conn.close()
