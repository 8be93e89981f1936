"""The Parquet form of the row contract.

Rules:

1. **Exact decimals.** Every decimal column is a Parquet ``DECIMAL`` at the column's scale in
   the table (8 places; 16 for quote amounts), never a float. The precision is the table's,
   capped at 38: prices, quantities and averages ``DECIMAL(38,8)`` as stored; quote amounts
   ``DECIMAL(38,16)`` (22 integer digits, 10^22 quote units) instead of the table's
   ``DECIMAL(65,16)``, because DuckDB and polars read at most 38 digits exactly (DuckDB turns
   wider ones into doubles). A value that does not fit fails the export naming the column;
   nothing is rounded.
2. **Types.** ``symbol`` string; ``timestamp`` ``timestamp[s, UTC]`` (the minute's start);
   counts and ids ``int64``; NULL stays null (an empty side's average, order flow unknown).
3. **Column order** is :data:`~tradepipe.core.rows.ROW_COLUMNS`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from tradepipe.core.rows import INT_COLUMNS, QUOTE_COLUMNS, ROW_COLUMNS, minute_ms_of_text
from tradepipe.store.ranges import Value

MAX_PRECISION = 38  # what DuckDB and polars hold exactly (rule 1)
PRICE_DECIMAL = pa.decimal128(38, 8)
QUOTE_DECIMAL = pa.decimal128(MAX_PRECISION, 16)


class ExportError(ValueError):
    """A value that cannot be written exactly (rule 1)."""


def column_type(column: str) -> pa.DataType:
    if column == "symbol":
        return pa.string()
    if column == "timestamp":
        return pa.timestamp("s", tz="UTC")
    if column in INT_COLUMNS:
        return pa.int64()
    return QUOTE_DECIMAL if column in QUOTE_COLUMNS else PRICE_DECIMAL


def arrow_schema() -> pa.Schema:
    return pa.schema([pa.field(c, column_type(c), nullable=True) for c in ROW_COLUMNS])


def _when(text: object) -> dt.datetime:
    return dt.datetime.fromtimestamp(minute_ms_of_text(str(text)) // 1000, tz=dt.UTC)


def table_of(rows: Sequence[tuple[Value, ...]], schema: pa.Schema) -> pa.Table:
    arrays = []
    for i, field in enumerate(schema):
        values: list[object] = [r[i] for r in rows]
        if field.name == "timestamp":
            values = [_when(v) for v in values]
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ExportError(f"column {field.name}: {exc}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(pages: Iterable[Sequence[tuple[Value, ...]]], out: BinaryIO) -> int:
    """Write every page to ``out`` as one Parquet file (one row group per page); rows written."""
    schema = arrow_schema()
    n = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for page in pages:
            writer.write_table(table_of(page, schema))
            n += len(page)
    return n
