"""Rows of a range as files for notebooks: CSV (the row contract's text, as ``aggregate``
prints it) and Parquet with exact ``DECIMAL`` columns (:mod:`.parquet`). Used by
``tradepipe export`` and the dashboard's downloads; the rows come from
:mod:`tradepipe.store.ranges`."""

from tradepipe.export.formats import FORMATS, write_rows
from tradepipe.export.parquet import arrow_schema

__all__ = ["FORMATS", "arrow_schema", "write_rows"]
