"""The analysis panel's numbers: does a minute's order flow explain the next minutes' return?

For each minute ``t`` of the selected range, three predictors and two responses:

- predictors: ``imbalance`` (store/series.py), ``delta_quote`` (buy - sell quote volume) and
  ``spread`` (``avg_b - avg_s``, the seed's own question; absent when a side is empty);
- responses: the next-minute return ``close[t+1] / close[t] - 1`` and the next-5-minute return
  ``close[t+5] / close[t] - 1``, only where the minute ``t+1`` (``t+5``) is in the range: a
  missing minute is never bridged.

For each pair: the points (for the scatter), the least-squares line (``scipy.stats.linregress``:
slope, intercept, its p-value), Pearson's r with its 95 % confidence interval
(``scipy.stats.pearsonr(...).confidence_interval``, Fisher's z), and ``n``. Fewer than 3 points, or
a predictor or response that does not vary, gives the points and ``n`` with the statistics
``None`` and a ``reason``. Correlation over one range is description, not a trading signal:
overlapping 5-minute windows are not independent, so their p-values and intervals are too
narrow (docs/orderflow.md says so next to the panel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from scipy import stats

from tradepipe.core.rows import minute_ms_of_text
from tradepipe.store.series import SeriesValue

PREDICTORS = ("imbalance", "delta_quote", "spread")
HORIZONS = (1, 5)
CONFIDENCE = 0.95
MIN_POINTS = 3


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


def forward_returns(
    minutes_ms: Sequence[int], closes: Sequence[Decimal], k: int
) -> list[float | None]:
    """``close[t+k] / close[t] - 1`` where minute ``t + k`` is in the data, else ``None``."""
    at = dict(zip(minutes_ms, closes, strict=True))
    out: list[float | None] = []
    for now, close in zip(minutes_ms, closes, strict=True):
        later = at.get(now + k * 60_000)
        out.append(None if later is None else float(later / close - 1))
    return out


def predictor_values(series: Sequence[Mapping[str, SeriesValue]]) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {p: [] for p in PREDICTORS}
    for s in series:
        out["imbalance"].append(_float(s["imbalance"]))
        out["delta_quote"].append(_float(s["delta_quote"]))
        b, a = s["avg_b"], s["avg_s"]
        spread = None if b is None or a is None else float(Decimal(str(b)) - Decimal(str(a)))
        out["spread"].append(spread)
    return out


def fit(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Line, r and its interval for one scatter (see the module docstring)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out: dict[str, Any] = {"n": len(xs), "points": {"x": list(x), "y": list(y)}}
    none = dict.fromkeys(("slope", "intercept", "r", "ci_low", "ci_high", "p"))
    if len(xs) < MIN_POINTS:
        return out | none | {"line": None, "reason": f"fewer than {MIN_POINTS} points"}
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out | none | {"line": None, "reason": "no variation"}
    line = stats.linregress(xs, ys)
    ci = stats.pearsonr(xs, ys).confidence_interval(CONFIDENCE)
    lo, hi = float(xs.min()), float(xs.max())
    return out | {
        "slope": float(line.slope),
        "intercept": float(line.intercept),
        "r": float(line.rvalue),
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "p": float(line.pvalue),
        "line": {"x": [lo, hi], "y": [float(line.intercept + line.slope * v) for v in (lo, hi)]},
        "reason": None,
    }


def analyse(series: Sequence[Mapping[str, SeriesValue]]) -> list[dict[str, Any]]:
    """One panel per (predictor, horizon), predictors outermost, from the range's derived
    series rows (:mod:`tradepipe.store.series`, which carries ``close``, ``avg_b``, ``avg_s``)."""
    minutes_ms = [minute_ms_of_text(str(s["timestamp"])) for s in series]
    closes = [Decimal(str(s["close"])) for s in series]
    xs = predictor_values(series)
    returns = {k: forward_returns(minutes_ms, closes, k) for k in HORIZONS}
    panels = []
    for name in PREDICTORS:
        for k in HORIZONS:
            pairs = [
                (x, y)
                for x, y in zip(xs[name], returns[k], strict=True)
                if x is not None and y is not None
            ]
            result = fit([p[0] for p in pairs], [p[1] for p in pairs])
            panels.append({"predictor": name, "horizon": k, **result})
    return panels
