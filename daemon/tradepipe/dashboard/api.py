"""The dashboard's JSON API, apart from HTTP: request parsing and the response shape.

``GET /api/minutes?symbol=BTCUSDT&last=60`` (the 60 minutes up to the symbol's newest row) or
``...&from=2026-11-24 06:00&to=2026-11-24 07:00`` (UTC, inclusive) answers::

    {"symbol": "BTCUSDT", "from": "...", "to": "...", "newest": "...", "count": 60,
     "truncated": false, "columns": {"timestamp": [...], "total_count_b": [...], ...,
     "spread": [...]}}

``GET /api/checks`` (same parameters) answers what ``tradepipe verify`` found for those
minutes (table ``minute_checks``; docs/verify.md)::

    {"symbol": "BTCUSDT", "from": "...", "to": "...", "minutes": [...], "status": [...],
     "counts": {"exact": 57, "hole": 1, "mismatch": 0, "missing": 0, "unchecked": 2},
     "proven": "0.95"}

one status per minute: every stored minute (``unchecked`` until verified) and every
``missing`` one; ``proven`` is the share of those minutes that are ``exact`` (exact decimal
text, ``null`` when there are none).

Decimals are exact contract text (``null`` for an empty side's average), counts and ids are
integers (aggregate ids stay below 2**53, exact in JavaScript too); ``spread`` is
``avg_b - avg_s`` computed exactly, ``null`` when either side is empty. Columns, not rows,
because that is what a chart trace takes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradepipe.core.rows import ROW_COLUMNS, minute_ms_of_text, minute_text
from tradepipe.dashboard.reader import MinuteReader
from tradepipe.store.reads import MAX_ROWS, Value

DEFAULT_LAST_MINUTES = 60
_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
_TEXT = "%Y-%m-%d %H:%M:%S"


class BadRequest(ValueError):
    """A query parameter the API cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class MinutesRequest:
    symbol: str
    last: int | None  # minutes up to the newest row, or None for an explicit range
    start: str | None
    end: str | None


def parse_minute(text: str, name: str) -> str:
    """A UTC minute in any of :data:`_FORMATS` -> ``YYYY-MM-DD HH:MM:00``."""
    for fmt in _FORMATS:
        try:
            when = dt.datetime.strptime(text.strip().removesuffix("Z"), fmt)  # noqa: DTZ007 - UTC by contract
        except ValueError:
            continue
        return when.replace(second=0).strftime(_TEXT)
    raise BadRequest(f"{name}={text!r} is not a UTC time like 2026-11-24 06:48")


def parse_request(query: Mapping[str, str]) -> MinutesRequest:
    symbol = query.get("symbol", "").strip().upper()
    if not symbol or not symbol.isalnum() or len(symbol) > 32:
        raise BadRequest("symbol= is required, e.g. symbol=BTCUSDT")
    if "from" in query or "to" in query:
        start = parse_minute(query["from"], "from") if query.get("from") else None
        end = parse_minute(query["to"], "to") if query.get("to") else None
        if start and end and start > end:
            raise BadRequest(f"from={start!r} is after to={end!r}")
        return MinutesRequest(symbol, None, start, end)
    text = query.get("last", str(DEFAULT_LAST_MINUTES))
    if not text.isdigit() or not 1 <= int(text) <= MAX_ROWS:
        raise BadRequest(f"last={text!r} must be a number of minutes from 1 to {MAX_ROWS}")
    return MinutesRequest(symbol, int(text), None, None)


def _shift(minute: str, minutes: int) -> str:
    return minute_text(minute_ms_of_text(minute) + minutes * 60_000)


def spread(avg_b: Value, avg_s: Value) -> str | None:
    if avg_b is None or avg_s is None:
        return None
    return format(Decimal(avg_b) - Decimal(avg_s), "f")


async def resolve(
    reader: MinuteReader, req: MinutesRequest
) -> tuple[str | None, str | None, str | None]:
    """(from, to, newest) of a request: ``last`` counts back from the symbol's newest minute."""
    newest = await reader.newest(req.symbol)
    if req.last is not None:
        return (_shift(newest, 1 - req.last) if newest else None), newest, newest
    return req.start, req.end, newest


def bounds(start: str | None, end: str | None, newest: str) -> tuple[str, str]:
    """The inclusive minutes to read: an open end reaches the first or the newest minute."""
    return start or "0000-01-01 00:00:00", end or newest


CHECK_STATUSES = ("exact", "hole", "mismatch", "missing", "unchecked")


async def checks_payload(reader: MinuteReader, req: MinutesRequest) -> dict[str, Any]:
    """Each checked minute's status in ``minute_checks`` and the share proven ``exact``."""
    start, end, newest = await resolve(reader, req)
    found: list[tuple[str, str]] = []
    if newest is not None:
        found = await reader.checks(req.symbol, *bounds(start, end, newest))
    counts = dict.fromkeys(CHECK_STATUSES, 0)
    for _, status in found:
        counts[status] = counts.get(status, 0) + 1
    total = len(found)
    proven = None
    if total:
        proven = format(
            (Decimal(counts["exact"]) / Decimal(total)).quantize(Decimal("0.0001")), "f"
        )
    return {
        "symbol": req.symbol,
        "from": start,
        "to": end,
        "minutes": [m for m, _ in found],
        "status": [s for _, s in found],
        "counts": counts,
        "proven": proven,
    }


async def minutes_payload(reader: MinuteReader, req: MinutesRequest) -> dict[str, Any]:
    start, end, newest = await resolve(reader, req)
    rows = []
    if newest is not None:
        rows = await reader.minutes(req.symbol, *bounds(start, end, newest))
    columns: dict[str, list[Value]] = {c: [r[c] for r in rows] for c in ROW_COLUMNS}
    del columns["symbol"]
    columns["spread"] = [spread(r["avg_b"], r["avg_s"]) for r in rows]
    return {
        "symbol": req.symbol,
        "from": start,
        "to": end,
        "newest": newest,
        "count": len(rows),
        "truncated": len(rows) >= MAX_ROWS,
        "columns": columns,
    }
