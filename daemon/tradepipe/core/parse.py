"""Parse Binance aggTrades from the forms they arrive in.

- a WebSocket event, raw (``{"e":"aggTrade",...}``) or in the combined-stream wrapper
  (``{"stream":"btcusdt@aggTrade","data":{...}}``), as bytes, str or an already-decoded dict;
- a REST ``/api/v3/aggTrades`` element (no ``e``/``E``/``s``: the caller names the symbol);
- a row of Binance's public data-dump CSV.

Every failure is a :class:`ParseError` with a specific reason; nothing here uses floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tradepipe.core.errors import ParseError
from tradepipe.core.trade import Trade, epoch_ms, parse_decimal

Message = bytes | bytearray | memoryview | str | Mapping[str, Any]

CSV_COLUMNS = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
)
_REQUIRED = ("a", "p", "q", "f", "l", "T", "m")


class _Wire(msgspec.Struct, frozen=True, gc=False):
    """The JSON shape of an aggTrade, decoded and type-checked in C (the fast path)."""

    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    e: str = "aggTrade"
    s: str | None = None
    E: int | None = None


class _Wrapped(msgspec.Struct, frozen=True, gc=False):
    stream: str
    data: _Wire


_decode_wire = msgspec.json.Decoder(_Wire).decode
_decode_wrapped = msgspec.json.Decoder(_Wrapped).decode
_decode_any = msgspec.json.Decoder().decode
_WRAPPER_HEADS = (b'{"stream":', '{"stream":')


def decode(message: Message) -> dict[str, Any]:
    """JSON text -> the aggTrade object, unwrapping a combined-stream wrapper."""
    if isinstance(message, Mapping):
        obj: Any = message
    else:
        try:
            obj = _decode_any(message)
        except msgspec.DecodeError as exc:
            raise ParseError("invalid_json", f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ParseError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    if "data" in obj and "stream" in obj:
        stream, data = obj["stream"], obj["data"]
        if not isinstance(data, dict):
            raise ParseError("not_an_object", f"stream {stream!r}: data is not an object")
        if isinstance(stream, str) and "@" in stream and isinstance(data.get("s"), str):
            if stream.split("@", 1)[0].upper() != data["s"]:
                raise ParseError("bad_symbol", f"stream {stream!r} carries symbol {data['s']!r}")
        return data
    return obj


def trade_from_object(obj: Mapping[str, Any], symbol: str | None = None) -> Trade:
    """A decoded aggTrade object (WebSocket or REST form) -> a validated :class:`Trade`.

    ``symbol`` is required for REST objects (which carry no ``s``) and, when given for an
    event that has one, must agree with it.
    """
    event = obj.get("e", "aggTrade")
    if event != "aggTrade":
        raise ParseError("wrong_event", f"event type {event!r} is not 'aggTrade'")
    for name in _REQUIRED:
        if name not in obj:
            raise ParseError("missing_field", f"field {name!r} is missing")
    sym = obj.get("s", symbol)
    if sym is None:
        raise ParseError("missing_field", "field 's' is missing")
    if not isinstance(sym, str):
        raise ParseError("bad_symbol", f"symbol {sym!r} is not a string")
    if symbol is not None and sym != symbol:
        raise ParseError("bad_symbol", f"symbol {sym!r} is not the expected {symbol!r}")
    if "E" in obj:
        epoch_ms("E", obj["E"])
    return Trade(
        symbol=sym,
        agg_id=obj["a"],
        price=parse_decimal("p", obj["p"]),
        quantity=parse_decimal("q", obj["q"]),
        first_id=obj["f"],
        last_id=obj["l"],
        time_ms=epoch_ms("T", obj["T"]),
        buyer_is_maker=obj["m"],
    )


def parse_event(message: Message, symbol: str | None = None) -> Trade:
    """One WebSocket message (raw or combined-stream wrapper) -> a :class:`Trade`.

    Well-formed messages take a fast path decoded and type-checked by msgspec; anything it
    refuses goes through the generic path, which names the precise reason.
    """
    if isinstance(message, Mapping):
        return trade_from_object(decode(message), symbol)
    try:
        if message[:10] in _WRAPPER_HEADS:
            wrapped = _decode_wrapped(message)
            wire = wrapped.data
            if wire.s is not None and wrapped.stream.partition("@")[0].upper() != wire.s:
                raise ParseError(
                    "bad_symbol", f"stream {wrapped.stream!r} carries symbol {wire.s!r}"
                )
        else:
            wire = _decode_wire(message)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return trade_from_object(decode(message), symbol)
    if wire.e != "aggTrade":
        raise ParseError("wrong_event", f"event type {wire.e!r} is not 'aggTrade'")
    sym = wire.s if wire.s is not None else symbol
    if sym is None:
        raise ParseError("missing_field", "field 's' is missing")
    if symbol is not None and sym != symbol:
        raise ParseError("bad_symbol", f"symbol {sym!r} is not the expected {symbol!r}")
    if wire.E is not None:
        epoch_ms("E", wire.E)
    return Trade(
        sym,
        wire.a,
        parse_decimal("p", wire.p),
        parse_decimal("q", wire.q),
        wire.f,
        wire.l,
        epoch_ms("T", wire.T),
        wire.m,
    )


def _csv_int(name: str, text: str) -> int:
    text = text.strip()
    if not text.isdigit():
        reason = "bad_time" if name == "transact_time" else "bad_id"
        raise ParseError(reason, f"{name} {text!r} is not a non-negative integer")
    return int(text)


def _csv_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ParseError("bad_flag", f"is_buyer_maker {text!r} is not a boolean")


def is_csv_header(fields: Sequence[str]) -> bool:
    return bool(fields) and fields[0].strip().lower() == CSV_COLUMNS[0]


def parse_csv_row(fields: Sequence[str], symbol: str) -> Trade:
    """A data-dump CSV row (7 or 8 columns) -> a :class:`Trade` of ``symbol``."""
    if len(fields) not in (7, 8):
        raise ParseError("bad_csv", f"expected 7 or 8 columns, got {len(fields)}")
    return Trade(
        symbol=symbol,
        agg_id=_csv_int("agg_trade_id", fields[0]),
        price=parse_decimal("price", fields[1].strip()),
        quantity=parse_decimal("quantity", fields[2].strip()),
        first_id=_csv_int("first_trade_id", fields[3]),
        last_id=_csv_int("last_trade_id", fields[4]),
        time_ms=epoch_ms("transact_time", _csv_int("transact_time", fields[5])),
        buyer_is_maker=_csv_bool(fields[6]),
    )


def to_event(trade: Trade, event_time_ms: int | None = None) -> dict[str, Any]:
    """A trade as a WebSocket aggTrade event object (e.g. for a REST-backfilled trade).

    Prices and quantities keep their exact decimal text; ``M`` is always true (ignored).
    """
    return {
        "e": "aggTrade",
        "E": trade.time_ms if event_time_ms is None else event_time_ms,
        "s": trade.symbol,
        "a": trade.agg_id,
        "p": format(trade.price, "f"),
        "q": format(trade.quantity, "f"),
        "f": trade.first_id,
        "l": trade.last_id,
        "T": trade.time_ms,
        "m": trade.buyer_is_maker,
        "M": True,
    }
