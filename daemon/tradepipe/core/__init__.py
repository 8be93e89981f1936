"""The async-free core: parse, classify and aggregate trades exactly, per minute.

Imports nothing asynchronous, networked or cloud-specific (a test enforces it), so the Lambda
ships it alone.
"""

from tradepipe.core.aggregate import (
    MINUTE_MS,
    MinuteKey,
    MinutePartial,
    aggregate,
    merge_all,
    minute_of,
    vwap,
)
from tradepipe.core.errors import REASONS, ParseError, Reason
from tradepipe.core.flow import BOUNDS, BUCKETS, FLOW_COLUMNS, OrderFlow
from tradepipe.core.idranges import IdRanges
from tradepipe.core.layout import (
    EVERY_SYMBOL,
    Layout,
    ObjectKey,
    group_of,
    object_key,
    parse_key,
    sink_object_name,
)
from tradepipe.core.parse import (
    Event,
    Fields,
    Wire,
    check,
    decode,
    parse_csv_row,
    parse_event,
    to_event,
    trade_from_object,
    validate,
)
from tradepipe.core.rows import ROW_COLUMNS, Row, minute_text, rows_of
from tradepipe.core.sources import (
    Rejected,
    SourceError,
    aggregate_file,
    decompress,
    iter_fields,
    iter_trades,
    read_file,
)
from tradepipe.core.trade import Side, Trade

__all__ = [
    "BOUNDS",
    "BUCKETS",
    "EVERY_SYMBOL",
    "FLOW_COLUMNS",
    "MINUTE_MS",
    "REASONS",
    "ROW_COLUMNS",
    "Event",
    "Fields",
    "IdRanges",
    "Layout",
    "MinuteKey",
    "MinutePartial",
    "ObjectKey",
    "OrderFlow",
    "ParseError",
    "Reason",
    "Rejected",
    "Row",
    "Side",
    "SourceError",
    "Trade",
    "Wire",
    "aggregate",
    "aggregate_file",
    "check",
    "decode",
    "decompress",
    "group_of",
    "iter_fields",
    "iter_trades",
    "merge_all",
    "minute_of",
    "minute_text",
    "object_key",
    "parse_csv_row",
    "parse_event",
    "parse_key",
    "read_file",
    "rows_of",
    "sink_object_name",
    "to_event",
    "trade_from_object",
    "validate",
    "vwap",
]
