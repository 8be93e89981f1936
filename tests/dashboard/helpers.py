"""A ``trade_minutes`` database filled through the real store, and the rows it must hold."""

from __future__ import annotations

import random
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path

from tests.conftest import unavailable

from tradepipe.core import Row, Trade, aggregate, read_file, rows_of
from tradepipe.store import Store, connect, migrate, parse_db_url

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "binance"
THREE_SYMBOLS = sorted(SHARED.glob("cryptofeed-BINANCE-ee25be.*usdt.aggTrade.ndjson"))


def recorded(paths: Iterable[Path]) -> list[Path]:
    """``paths`` if there are any; else the recorded data is absent: the one missing-component
    policy (fails under CI=true, skips elsewhere), not a test over nothing."""
    found = list(paths)
    if not found:
        unavailable(f"the recorded trades are missing from {SHARED} (../shared/data/README.md)")
    return found


def trades_of(paths: Iterable[Path]) -> list[Trade]:
    out: list[Trade] = []
    for path in recorded(paths):
        out.extend(t for t in read_file(str(path)) if isinstance(t, Trade))
    return out


def load(url: str, trades: list[Trade]) -> None:
    """Migrate and upsert through tradepipe.store, the code path the Lambda and `run` use."""
    conn = connect(parse_db_url(url))
    try:
        migrate(conn)
    finally:
        conn.close()
    store = Store(url)
    try:
        store.upsert(trades)
    finally:
        store.close()


def expected_rows(trades: list[Trade]) -> list[Row]:
    """What ``tradepipe aggregate`` prints for these trades (the core, independent of the DB)."""
    return list(rows_of(aggregate(trades).values()))


def synthetic_trades(
    minutes: int,
    symbol: str = "BTCUSDT",
    start_ms: int = 1_732_406_400_000,
    agg_start: int = 3_000_000_000,
) -> list[Trade]:
    """A seeded, varied series: a few trades every second of every minute, both sides."""
    rng = random.Random(11)
    trades = []
    price = 9_700_000  # cents
    agg = agg_start
    first = agg_start + 1_000_000_000
    for second in range(minutes * 60):
        for ms in sorted(rng.randint(0, 999) for _ in range(rng.randint(0, 4))):
            price += rng.choice((-30, -10, 0, 10, 30))
            q = rng.randint(1, 300_000_000)
            k = rng.randint(1, 3)
            trades.append(
                Trade(
                    symbol=symbol,
                    agg_id=agg,
                    price=Decimal(f"{price // 100}.{price % 100:02d}"),
                    quantity=Decimal(f"{q // 100_000_000}.{q % 100_000_000:08d}"),
                    first_id=first,
                    last_id=first + k - 1,
                    time_ms=start_ms + second * 1000 + ms,
                    buyer_is_maker=rng.random() < 0.45,
                )
            )
            agg += 1
            first += k
    return trades
