"""The shipped sample data: a seeded generator of realistic Binance aggTrades.

``python -m scripts.sample [--seed S] [--minutes M] [--out DIR]`` (or
``scripts/make-sample``) writes ``DIR/<symbol>-aggtrades-<M>m.ndjson.gz``, one aggTrade event per
line. The same seed gives byte-identical files (the gzip header carries no name or time).

The model, per symbol (parameters in :data:`MODELS`, calibrated against the real recorded
BTCUSDT/ETHUSDT streams in ``../shared/data/binance/``):

1. **Activity regimes** — quiet, normal, busy and burst spells (a Markov chain with exponential
   durations) scale the taker-order rate and the volatility: trades come in bursts and lulls.
2. **Taker orders** arrive as a Poisson process at the regime's rate. An order is one aggTrade,
   or — about one time in ten — a sweep of several price levels: several aggTrades with the
   same trade time ``T`` at successive prices, as when a market order walks the book.
3. **Side**: with probability ``side_memory`` the previous side repeats, else a buy with
   probability ``buy_share`` (the real streams show ~54 % buys and runs of ~2.5 same-side
   aggTrades). ``m`` is true for sells (the buyer was the maker).
4. **Price**: a latent fair price follows a Gaussian random walk with the configured hourly
   volatility; the quoted bid follows it only once it is more than ``stickiness`` away, so
   trades bounce between bid and ask (one tick apart) for a while and then jump, as on the real
   book. Buys fill at the ask and upwards, sells at the bid and downwards.
5. **Quantity**: log-normal around ``qty_median`` (real BTCUSDT: median ~0.004 BTC, 90th
   percentile ~0.06, 99th ~0.25), one in eight snapped to a round size (0.001, 0.01, 0.1 ...),
   clipped at 2000 medians, rounded down to the lot step (0.00001 BTC, 0.0001 ETH).
6. **Ids**: aggregate ids are contiguous; each aggTrade covers ``l - f + 1`` underlying trades
   (mostly 1, more for larger quantities: ~1.13 on average, as in the real data) and trade ids
   are contiguous across aggTrades. Event time ``E`` is ``T`` plus 0-4 ms.
7. **A whole market** (:func:`market`, ``tradepipe replay --symbols N``): N symbols whose mean
   rates follow Zipf's law (rank ``r`` gets a share ``r ** -1.1`` of ``rate`` aggTrades/s; the
   first two are the BTCUSDT and ETHUSDT models above), prices log-normal from 0.05 to 50,000,
   quote assets mostly USDT (one in six FDUSD, one in eight BTC). Market-wide *bursts*
   (``burst_x`` times every symbol's rate, ``burst_seconds`` long every ``burst_every``
   seconds) sit on top of each symbol's own regimes, as when the whole market moves at once.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import math
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from tradepipe.core import Trade, iter_trades
from tradepipe.replay.tape import Tape, tape_of

DEFAULT_SEED = 20241124
DEFAULT_MINUTES = 60
START = datetime(2024, 11, 24, 6, 0, tzinfo=UTC)  # BTCUSDT traded near 97,000 then
# Round sizes, as multiples of qty_round_unit, with how often each is chosen.
_ROUND_SIZES = (
    (1, 25),
    (2, 15),
    (5, 15),
    (10, 15),
    (20, 10),
    (50, 8),
    (100, 6),
    (200, 3),
    (500, 2),
)
_MAX_QTY_MEDIANS = 2000  # clip the log-normal tail (~5 BTC at the BTCUSDT median)
_E_DELAYS = ((0, 5), (1, 72), (2, 15), (3, 5), (4, 3))  # (ms, weight), as in the real stream


@dataclass(frozen=True, slots=True)
class SymbolModel:
    symbol: str
    start_price: int  # in ticks of 0.01
    qty_decimals: int  # lot step = 10 ** -qty_decimals
    qty_median: float
    qty_sigma: float
    qty_round_unit: float  # round sizes are multiples of this
    trades_per_minute: float  # mean aggTrades per minute in the normal regime
    hourly_volatility: float  # fraction of price, normal regime
    stickiness_ticks: int
    first_agg_id: int
    first_trade_id: int
    buy_share: float = 0.53
    side_memory: float = 0.12


MODELS: dict[str, SymbolModel] = {
    "BTCUSDT": SymbolModel(
        "BTCUSDT", 9_700_000, 5, 0.0025, 2.0, 0.001, 800, 0.005, 120, 3_300_000_000, 4_200_000_000
    ),
    "ETHUSDT": SymbolModel(
        "ETHUSDT", 335_000, 4, 0.06, 2.0, 0.01, 340, 0.007, 8, 1_900_000_000, 2_600_000_000
    ),
}

# regime: (rate multiplier, volatility multiplier, mean duration s, next-regime weights)
_REGIMES: dict[str, tuple[float, float, float, dict[str, float]]] = {
    "quiet": (0.35, 0.6, 120.0, {"normal": 0.8, "busy": 0.2}),
    "normal": (1.0, 1.0, 180.0, {"quiet": 0.45, "busy": 0.45, "burst": 0.1}),
    "busy": (2.0, 1.5, 60.0, {"normal": 0.7, "burst": 0.2, "quiet": 0.1}),
    "burst": (5.0, 3.0, 12.0, {"busy": 0.6, "normal": 0.4}),
}
# Average aggTrades per taker order (sweeps): keeps the mean aggTrade rate as configured.
_AGG_PER_ORDER = 1.12


class _Walk:
    """Rules 1-6 for one symbol; :meth:`lines` yields the NDJSON event lines."""

    def __init__(
        self,
        model: SymbolModel,
        seed: int,
        minutes: int,
        bursts: Sequence[tuple[int, int]] = (),
        burst_x: float = 1.0,
    ) -> None:
        self.m = model
        self.bursts, self.burst_x = bursts, burst_x  # market-wide spells (rule 7)
        self.rng = random.Random(f"tradepipe-sample:{seed}:{model.symbol}")
        self.end_ms = minutes * 60_000
        self.fair = float(model.start_price)
        self.bid = model.start_price
        self.side_buy = True
        self.agg_id = model.first_agg_id
        self.trade_id = model.first_trade_id
        self.origin_ms = int(START.timestamp() * 1000)
        # per-second standard deviation of the fair price, in ticks
        self.sigma = model.start_price * model.hourly_volatility / 60.0

    def _regimes(self) -> Iterator[tuple[int, int, str]]:
        """(start ms, end ms, regime) spells covering the span."""
        rng, t, name = self.rng, 0, "normal"
        while t < self.end_ms:
            length = max(1000, int(rng.expovariate(1.0 / _REGIMES[name][2]) * 1000))
            yield t, min(self.end_ms, t + length), name
            t += length
            weights = _REGIMES[name][3]
            name = rng.choices(list(weights), list(weights.values()))[0]

    def _spells(self) -> Iterator[tuple[int, int, str, float]]:
        """The regime spells, cut at the market-wide bursts (rule 7): (start, end, regime,
        rate multiplier)."""
        for start, end, regime in self._regimes():
            cuts = sorted({start, end, *(x for b in self.bursts for x in b if start < x < end)})
            for lo, hi in itertools.pairwise(cuts):
                inside = any(b0 <= lo and hi <= b1 for b0, b1 in self.bursts)
                yield lo, hi, regime, self.burst_x if inside else 1.0

    def lines(self) -> Iterator[str]:
        rng = self.rng
        order_rate = self.m.trades_per_minute / 60.0 / _AGG_PER_ORDER  # orders per second
        for start, end, regime, burst in self._spells():
            rate_x, vol_x = _REGIMES[regime][:2]
            rate_x *= burst
            t = float(start)
            last = t
            while True:
                t += rng.expovariate(order_rate * rate_x) * 1000.0
                if t >= end:
                    break
                self._move_fair((t - last) / 1000.0, vol_x)
                last = t
                yield from self._order(int(t))

    def _move_fair(self, seconds: float, vol_x: float) -> None:
        self.fair += self.rng.gauss(0.0, self.sigma * vol_x * math.sqrt(seconds))
        if abs(self.fair - (self.bid + 0.5)) > self.m.stickiness_ticks:
            self.bid = max(1, math.floor(self.fair))

    def _order(self, t_ms: int) -> Iterator[str]:
        rng = self.rng
        if rng.random() >= self.m.side_memory:
            self.side_buy = rng.random() < self.m.buy_share
        buy = self.side_buy
        levels = 1
        while levels < 8 and rng.random() < 0.1:
            levels += 1
        price = self.bid + 1 if buy else self.bid
        for level in range(levels):
            if level:
                step = 1 + int(rng.expovariate(0.5))
                price = price + step if buy else max(1, price - step)
            yield self._line(t_ms, price, self._quantity(levels > 1), buy)
        if levels > 1:  # the sweep moved the book
            self.bid = price - 1 if buy else price
            self.fair = self.bid + 0.5

    def _quantity(self, sweep: bool) -> int:
        """In lot steps."""
        rng, m = self.rng, self.m
        if rng.random() < 0.125:
            size = rng.choices([s for s, _ in _ROUND_SIZES], [w for _, w in _ROUND_SIZES])[0]
            qty = size * m.qty_round_unit
        else:
            qty = rng.lognormvariate(math.log(m.qty_median * (2.0 if sweep else 1.0)), m.qty_sigma)
            qty = min(qty, m.qty_median * _MAX_QTY_MEDIANS)
        return max(1, int(qty * 10**m.qty_decimals))

    def _line(self, t_ms: int, price: int, qty: int, buy: bool) -> str:
        rng, m = self.rng, self.m
        fills = 1
        p_more = min(0.6, 0.05 * (1.0 + math.log1p(qty / (m.qty_median * 10**m.qty_decimals))))
        while fills < 30 and rng.random() < p_more:
            fills += 1
        first = self.trade_id
        self.trade_id += fills
        agg = self.agg_id
        self.agg_id += 1
        delay = rng.choices([d for d, _ in _E_DELAYS], [w for _, w in _E_DELAYS])[0]
        when = self.origin_ms + t_ms
        d = m.qty_decimals
        return (
            f'{{"e":"aggTrade","E":{when + delay},"s":"{m.symbol}","a":{agg},'
            f'"p":"{price // 100}.{price % 100:02d}000000",'
            f'"q":"{qty // 10**d}.{qty % 10**d:0{d}d}{"0" * (8 - d)}",'
            f'"f":{first},"l":{first + fills - 1},"T":{when},'
            f'"m":{"false" if buy else "true"},"M":true}}'
        )


def generate(symbol: str, seed: int = DEFAULT_SEED, minutes: int = DEFAULT_MINUTES) -> list[str]:
    """The sample's event lines for ``symbol`` (a key of :data:`MODELS`)."""
    return list(_Walk(MODELS[symbol], seed, minutes).lines())


ZIPF_EXPONENT = 1.1
# (quote asset, weight) for the generated symbols after the first two
_QUOTES = (("USDT", 34), ("FDUSD", 8), ("BTC", 6))


@dataclass(frozen=True, slots=True)
class Bursts:
    """Market-wide bursts (rule 7): ``x`` times the rate for ``seconds`` every ``every`` s."""

    x: float = 10.0
    seconds: float = 5.0
    every: float = 60.0

    def spells(self, minutes: int) -> list[tuple[int, int]]:
        if self.x == 1.0 or self.seconds <= 0:
            return []
        step, length = int(self.every * 1000), int(self.seconds * 1000)
        return [(t, t + length) for t in range(step - length, minutes * 60_000, step)]


def market_models(n: int, rate: float, seed: int = DEFAULT_SEED) -> list[SymbolModel]:
    """``n`` symbol models with Zipf-distributed mean rates summing to ``rate`` aggTrades/s."""
    if n < 1 or rate <= 0:
        raise ValueError("a market needs at least one symbol and a positive rate")
    rng = random.Random(f"tradepipe-market:{seed}")
    weights = [r**-ZIPF_EXPONENT for r in range(1, n + 1)]
    per_minute = [60.0 * rate * w / sum(weights) for w in weights]
    base = list(MODELS.values())
    out: list[SymbolModel] = []
    for i in range(n):
        if i < len(base):
            out.append(replace(base[i], trades_per_minute=per_minute[i]))
            continue
        quote = rng.choices([q for q, _ in _QUOTES], [w for _, w in _QUOTES])[0]
        price = max(5, int(math.exp(rng.uniform(math.log(5), math.log(5_000_000)))))
        dollars = price / 100
        decimals = min(8, max(0, round(math.log10(dollars))))  # BTC: 5, ETH: 4, $1: 0
        out.append(
            SymbolModel(
                symbol=f"C{i:04d}{quote}",
                start_price=price,
                qty_decimals=decimals,
                qty_median=max(10.0**-decimals, 100.0 / dollars),  # ~100 quote units a trade
                qty_sigma=2.0,
                qty_round_unit=max(10.0**-decimals, 10.0 ** round(math.log10(10.0 / dollars))),
                trades_per_minute=per_minute[i],
                hourly_volatility=rng.uniform(0.004, 0.02),
                stickiness_ticks=max(1, price // 2000),
                first_agg_id=rng.randrange(1, 500_000_000),
                first_trade_id=rng.randrange(1, 900_000_000),
            )
        )
    return out


def market(
    n: int,
    rate: float = 3000.0,
    minutes: int = 2,
    seed: int = DEFAULT_SEED,
    bursts: Bursts | None = None,
) -> list[str]:
    """Every symbol's event lines of a generated market (rule 7), symbol after symbol."""
    spells = bursts.spells(minutes) if bursts is not None else []
    burst_x = bursts.x if bursts is not None else 1.0
    if spells and bursts is not None:  # the average stays ``rate``: quieter between bursts
        rate /= 1 + (burst_x - 1) * bursts.seconds / bursts.every
    lines: list[str] = []
    for model in market_models(n, rate, seed):
        lines.extend(_Walk(model, seed, minutes, spells, burst_x).lines())
    return lines


def market_tape(
    n: int,
    rate: float = 3000.0,
    minutes: int = 2,
    seed: int = DEFAULT_SEED,
    bursts: Bursts | None = None,
) -> Tape:
    """:func:`market` as the emulator's tape."""
    data = "\n".join(market(n, rate, minutes, seed, bursts)).encode()
    return tape_of(t for t in iter_trades(data, "generated market") if isinstance(t, Trade))


def gzip_lines(lines: Sequence[str]) -> bytes:
    """Deterministic gzip: no file name, mtime 0, fixed level."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        for line in lines:
            gz.write(line.encode() + b"\n")
    return buf.getvalue()


def sample_path(out: Path, symbol: str, minutes: int) -> Path:
    return out / f"{symbol.lower()}-aggtrades-{minutes}m.ndjson.gz"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make-sample", description="Write the seeded sample aggTrades (gzip NDJSON)."
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--minutes", type=int, default=DEFAULT_MINUTES)
    parser.add_argument("--out", type=Path, default=Path("samples"))
    parser.add_argument("--symbols", default=",".join(MODELS), help="comma-separated")
    args = parser.parse_args(argv)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    unknown = [s for s in symbols if s not in MODELS]
    if unknown or args.minutes <= 0:
        parser.error(
            f"unknown symbol(s) {unknown}; known: {list(MODELS)}" if unknown else "--minutes"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for symbol in symbols:
        lines = generate(symbol, args.seed, args.minutes)
        path = sample_path(args.out, symbol, args.minutes)
        data = gzip_lines(lines)
        path.write_bytes(data)
        print(f"{path}: {len(lines)} aggTrades, {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
