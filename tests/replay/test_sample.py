"""The shipped sample and its generator: deterministic, and shaped like the real stream."""

from __future__ import annotations

import gzip
import itertools
from decimal import Decimal
from pathlib import Path

import pytest
from scripts.sample import (
    DEFAULT_MINUTES,
    DEFAULT_SEED,
    MODELS,
    generate,
    gzip_lines,
    main,
    sample_path,
)
from scripts.shape import shape

from tradepipe.core import Trade, parse_event
from tradepipe.replay import Tape

from .helpers import ROOT


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        assert main(["--seed", str(seed), "--minutes", "3", "--out", str(out)]) == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == ["btcusdt-aggtrades-3m.ndjson.gz", "ethusdt-aggtrades-3m.ndjson.gz"]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()


@pytest.mark.parametrize("symbol", sorted(MODELS))
def test_shipped_sample_is_the_generator_output(symbol: str) -> None:
    path = sample_path(ROOT / "samples", symbol, DEFAULT_MINUTES)
    lines = generate(symbol, DEFAULT_SEED, DEFAULT_MINUTES)
    # content equality holds everywhere; the gzip bytes also match with the same zlib
    assert gzip.decompress(path.read_bytes()).decode().splitlines() == lines
    assert path.stat().st_size < 2_000_000
    assert len(gzip_lines(lines)) == path.stat().st_size


def sample_trades(symbol: str) -> list[Trade]:
    path = sample_path(ROOT / "samples", symbol, DEFAULT_MINUTES)
    return [parse_event(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


@pytest.mark.parametrize("symbol", sorted(MODELS))
def test_sample_is_well_formed(symbol: str) -> None:
    trades = sample_trades(symbol)
    model = MODELS[symbol]
    step = Decimal(1).scaleb(-model.qty_decimals)
    assert trades[0].agg_id == model.first_agg_id
    for a, b in itertools.pairwise(trades):
        assert b.agg_id == a.agg_id + 1  # contiguous aggregate ids
        assert b.first_id == a.last_id + 1  # contiguous underlying trade ids
        assert b.time_ms >= a.time_ms
    for t in trades:
        assert t.quantity % step == 0 and t.quantity >= step
        assert t.price % Decimal("0.01") == 0
    line = gzip.decompress(sample_path(ROOT / "samples", symbol, 60).read_bytes()).split(b"\n")[0]
    assert b'"p":"' in line and line.count(b".") == 2  # 8-place decimal strings
    assert all(len(x.split(b'"')[0]) == 8 for x in line.split(b".")[1:])


def test_sample_shape_is_close_to_the_real_stream(real_tape: Tape) -> None:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        real = shape([t for t in real_tape.trades if t.symbol == symbol])
        ours = shape(sample_trades(symbol))
        assert 55 <= ours["span_minutes"] <= 60
        rate, real_rate = ours["aggtrades_per_minute"], real["aggtrades_per_minute"]
        assert real_rate / 3 < rate < real_rate * 3  # same order of magnitude
        low, high = ours["per_minute_min_max"]
        assert high > 3 * low  # bursts and quiet spells
        assert abs(ours["sell_share_m_true"] - real["sell_share_m_true"]) < 0.05
        assert abs(ours["trades_per_aggtrade"] - real["trades_per_aggtrade"]) < 0.1
        assert abs(ours["mean_side_run"] - real["mean_side_run"]) < 0.6
        p10, p50, p90, _ = (Decimal(x) for x in ours["qty_p10_p50_p90_p99"])
        r10, r50, r90, _ = (Decimal(x) for x in real["qty_p10_p50_p90_p99"])
        price_ratio = Decimal(ours["price_first_min_max"][0]) / Decimal(
            real["price_first_min_max"][0]
        )
        # quantities alike in quote value (prices differ between 2021 and the sample's 2024)
        for mine, theirs in ((p10, r10), (p50, r50), (p90, r90)):
            assert theirs / 4 < mine * price_ratio < theirs * 4
    btc = shape(sample_trades("BTCUSDT"))
    assert 90_000 < Decimal(btc["price_first_min_max"][0]) < 100_000  # near real levels
