"""Small builders for core tests."""

from __future__ import annotations

from typing import Any

import msgspec

BASE_T = 1_732_406_400_000  # 2024-11-24 00:00:00 UTC


def event(**overrides: Any) -> dict[str, Any]:
    """A valid aggTrade event; override any field (``drop=[...]`` removes fields)."""
    drop = overrides.pop("drop", [])
    ev: dict[str, Any] = {
        "e": "aggTrade",
        "E": BASE_T + 5,
        "s": "BTCUSDT",
        "a": 3_300_000_000,
        "p": "97123.45000000",
        "q": "0.01200000",
        "f": 4_200_000_000,
        "l": 4_200_000_002,
        "T": BASE_T + 3,
        "m": True,
        "M": True,
    }
    ev.update(overrides)
    for name in drop:
        ev.pop(name)
    return ev


def line(**overrides: Any) -> bytes:
    return msgspec.json.encode(event(**overrides))  # (ints over 64 bits too)
