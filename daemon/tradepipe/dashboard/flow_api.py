"""The analysis page's JSON and download endpoints, apart from HTTP (request as in
:mod:`tradepipe.dashboard.api`: ``symbol`` and ``last`` or ``from``/``to``, inclusive UTC):

- ``GET /api/series``: the derived series of the range (:mod:`tradepipe.store.series`) as
  columns: ``{"symbol", "from", "to", "count", "columns": {"timestamp": [...], "delta_base":
  [...], ..., "ret": [...]}}``; exact decimals as text, ratios as numbers;
- ``GET /api/analysis``: the panel's fits (:mod:`tradepipe.dashboard.analysis`):
  ``{"symbol", "from", "to", "minutes", "panels": [{"predictor", "horizon", "n", "slope",
  "intercept", "r", "ci_low", "ci_high", "p", "line", "points", "reason"}, ...]}``;
- ``GET /api/export?...&format=csv|parquet``: the range's rows as a file download, every
  column, the bytes ``tradepipe export`` writes for the same range.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from tradepipe.core.rows import minute_ms_of_text, minute_text
from tradepipe.dashboard.analysis import analyse
from tradepipe.dashboard.api import BadRequest, MinutesRequest, bounds, resolve
from tradepipe.dashboard.reader import MinuteReader
from tradepipe.export import FORMATS
from tradepipe.store.ranges import RowRange
from tradepipe.store.series import SERIES

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


async def series_payload(reader: MinuteReader, req: MinutesRequest) -> dict[str, Any]:
    start, end, newest = await resolve(reader, req)
    rows = [] if newest is None else await reader.series(req.symbol, *bounds(start, end, newest))
    columns = {c: [r[c] for r in rows] for c in ("timestamp", *SERIES)}
    return {"symbol": req.symbol, "from": start, "to": end, "count": len(rows), "columns": columns}


async def analysis_payload(reader: MinuteReader, req: MinutesRequest) -> dict[str, Any]:
    start, end, newest = await resolve(reader, req)
    series = [] if newest is None else await reader.series(req.symbol, *bounds(start, end, newest))
    return {
        "symbol": req.symbol,
        "from": start,
        "to": end,
        "minutes": len(series),
        "panels": await asyncio.to_thread(analyse, series),  # numpy/scipy off the event loop
    }


def export_format(query: Mapping[str, str]) -> str:
    fmt = query.get("format", "")
    if fmt not in FORMATS:
        raise BadRequest(f"format={fmt!r} must be one of {', '.join(FORMATS)}")
    return fmt


async def export_range(reader: MinuteReader, req: MinutesRequest) -> tuple[RowRange, str]:
    """The store range of a request (inclusive ``to`` -> exclusive ``until``) and a file stem."""
    start, end, newest = await resolve(reader, req)
    until = None if end is None else minute_text(minute_ms_of_text(end) + 60_000)
    if req.last is not None and newest is None:
        until = start = "0000-01-01 00:00:00"  # nothing yet: an empty file, not everything
    stem = "_".join(
        [req.symbol, *(t.replace(" ", "T")[:16].replace(":", "") for t in (start, end) if t)]
    )
    return RowRange((req.symbol,), start, until), stem
