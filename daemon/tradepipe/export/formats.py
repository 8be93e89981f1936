"""CSV and Parquet writers over pages of exact rows (:mod:`tradepipe.store.ranges`).

CSV is the row contract's text exactly as ``tradepipe aggregate`` prints it: the header
:data:`~tradepipe.core.rows.ROW_COLUMNS`, decimals in plain notation at the column's scale,
an empty field for NULL. Parquet: :mod:`tradepipe.export.parquet`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import BinaryIO

from tradepipe.core.rows import ROW_COLUMNS, decimal_text
from tradepipe.export.parquet import write_parquet
from tradepipe.store.ranges import Value

Pages = Iterable[Sequence[tuple[Value, ...]]]


def text_of(row: Sequence[Value]) -> list[str]:
    out = []
    for column, value in zip(ROW_COLUMNS, row, strict=True):
        if value is None:
            out.append("")
        elif isinstance(value, Decimal):
            out.append(decimal_text(value, column))
        else:
            out.append(str(value))
    return out


def write_csv(pages: Pages, out: BinaryIO) -> int:
    """Write the header and every row as UTF-8 CSV (``\\n`` line ends); rows written."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(ROW_COLUMNS)
    n = 0
    for page in pages:
        writer.writerows(text_of(r) for r in page)
        n += len(page)
    text.flush()
    text.detach()  # leave ``out`` open for the caller
    return n


FORMATS: dict[str, Callable[[Pages, BinaryIO], int]] = {
    "csv": write_csv,
    "parquet": write_parquet,
}


def write_rows(pages: Pages, out: BinaryIO, fmt: str) -> int:
    """Write ``pages`` to ``out`` in ``fmt`` (a key of :data:`FORMATS`); rows written."""
    return FORMATS[fmt](pages, out)
