"""The one validation path: bytes (or a decoded object, or a CSV row) -> a Trade or a ParseError.

Every shell -- the producer (WebSocket frames, REST elements), the sink (Kafka values), the
Lambda, ``tradepipe aggregate``/``load`` and local mode -- goes through the same two steps, in
this order; the first rule an input breaks names its :class:`~tradepipe.core.errors.Reason`.

**Step 1, decode** (:func:`decode`): one msgspec decode into :class:`Wire`, whose field types
are checked in C while decoding (the part of rules 7-13 a type can say). Bulk readers call
:func:`decode_bytes`, which first tries the same fields with no unknown field allowed: such a
line has had every byte checked by the decoder, so rules 3 and 4 need no scan of their own.

1. ``None``, or nothing but whitespace -> ``empty``.
2. Over ``MAX_LINE_BYTES`` (64 KiB; an event is ~200 bytes) -> ``too_large``.
3. Not UTF-8 anywhere in the line (a ``str`` with lone surrogates too) -> ``bad_encoding``.
4. Arrays/objects nested over ``MAX_DEPTH`` (32) levels, anywhere, even in an ignored field
   -> ``too_deep`` (never a ``RecursionError``); any other JSON syntax error (NaN, trailing
   bytes, a lone surrogate escape, ...) -> ``invalid_json``.
5. Not an object, or a combined-stream wrapper's ``data`` not an object -> ``not_an_object``.
   A field of the wrong JSON type (an id that is a string, a float or ``true``; ``p`` not a
   string; ``m`` not a boolean; ...), an id outside ``0..MAX_ID``, or a number beyond the
   decoder's range (``1e400``) -> the reason of that field's rule below. Unknown fields are
   ignored (Vector adds some); of repeated keys the last wins, but every occurrence of a
   field is type-checked by the decoder (`{"m":"x","m":false}` -> `bad_flag`).

**Step 2, validate** (:func:`check`, and :func:`validate` which makes the Trade):

6. A wrapper (``{"stream": "btcusdt@aggTrade", "data": {...}}``) is unwrapped once; its
   ``stream`` must be a string and name the same symbol as the inner ``s``; a wrapper inside
   a wrapper -> ``not_an_object``.
7. ``e``, when present, is ``"aggTrade"`` -> else ``wrong_event``.
8. ``a p q f l T m`` are all present, and ``s`` unless the caller names the symbol (REST,
   CSV) -> else ``missing_field``.
9. The symbol is a ``str`` matching ``[A-Z0-9]{1,20}``, and equals the caller's when both
   exist -> else ``bad_symbol``.
10. ``a``, ``f``, ``l`` are JSON integers (not booleans, not floats) in ``0 .. MAX_ID`` =
    2^53-1: inside MySQL's BIGINT and exact as a JavaScript number in the dashboard's JSON
    -> else ``bad_id``. ``f <= l`` -> else ``id_order``; ``l - f < MAX_SPAN`` (2^24
    underlying trades per aggregate trade, so that a minute's sum stays exact) -> ``bad_id``.
11. ``p`` and ``q``: the one decimal reader, :func:`tradepipe.core.decimals.read_units`
    (ASCII ``0-9`` and one ``.``, at most 20 integer digits and 8 significant decimals, > 0).
12. ``T`` (and ``E`` when present) is a JSON integer; ``>= 10^14`` means microseconds and is
    floored to ms; the ms value is in ``[MIN_TIME_MS, limit)`` where ``limit`` is 2100-01-01,
    or, when the shell passes its clock as ``now_ms``, ``now_ms + FUTURE_MS`` (one hour: what
    Kafka's ``message.timestamp.after.max.ms`` accepts by default) -> else ``bad_time``.
    The core never reads a clock itself.
13. ``m`` is a JSON boolean -> else ``bad_flag``.

:func:`check` returns the validated values as plain :data:`Fields` (amounts as integers of
1e-8 units): the bulk path (``core/sources.aggregate_lines``) aggregates those directly, and
:func:`validate` turns the very same tuple into a :class:`Trade`, so there is no second set of
rules. A data-dump CSV row is mapped onto a :class:`Wire` (:func:`csv_wire`, ``bad_csv`` when
the columns are wrong) and takes step 2 like any event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from tradepipe.core.decimals import read_units, show, units_to_decimal
from tradepipe.core.errors import ParseError, Reason
from tradepipe.core.trade import Trade

Message = bytes | bytearray | memoryview | str | Mapping[str, Any] | None
# (symbol, a, p in 1e-8 units, q in 1e-8 units, f, l, T in ms, m): Trade's field order
Fields = tuple[str, int, int, int, int, int, int, bool]

MAX_LINE_BYTES = 64 * 1024
MAX_DEPTH = 32  # nesting of arrays/objects; an aggTrade in a wrapper is 2
MAX_ID = 2**53 - 1
MAX_SPAN = 2**24
# Plausible trade times: 2010-01-01 .. 2100-01-01 (Binance opened in 2017; leave room).
MIN_TIME_MS = 1_262_304_000_000
MAX_TIME_MS = 4_102_444_800_000
FUTURE_MS = 3_600_000  # Kafka's message.timestamp.after.max.ms default
_LAST_NOW = MAX_TIME_MS - FUTURE_MS  # from here on, MAX_TIME_MS is the nearer limit
MICROS_FROM = 100_000_000_000_000  # >= 1e14 is microseconds (ms will not reach it until 5138)
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}")
_AT_FIELD = re.compile(r" - at `\$(?:\.data)?\.(\w+)")
_FIELD_REASON = {
    "stream": Reason.NOT_AN_OBJECT,
    "a": Reason.BAD_ID,
    "f": Reason.BAD_ID,
    "l": Reason.BAD_ID,
    "p": Reason.BAD_DECIMAL,
    "q": Reason.BAD_DECIMAL,
    "T": Reason.BAD_TIME,
    "E": Reason.BAD_TIME,
    "s": Reason.BAD_SYMBOL,
    "m": Reason.BAD_FLAG,
    "e": Reason.WRONG_EVENT,
}
_REQUIRED = ("a", "p", "q", "f", "l", "T", "m")


Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


class Event(msgspec.Struct, gc=False):
    """The fields of an aggTrade as sent, or of a combined-stream wrapper (``stream``, ``data``).

    The types are rules 5, 7, 9, 10, 12 and 13 as far as a type says it (checked in C while
    decoding: an id is an integer in ``0..MAX_ID``, never a bool or float; ``p`` is a string,
    ``m`` a bool, ...); a value of the wrong type fails the decode with the reason of its
    field. Every field may be absent (rule 8 is :func:`check`'s), so that the producer can
    read control messages through the same decode.
    """

    e: str | UnsetType = UNSET
    E: int | UnsetType = UNSET
    s: str | UnsetType = UNSET
    a: Id | UnsetType = UNSET
    p: str | UnsetType = UNSET
    q: str | UnsetType = UNSET
    f: Id | UnsetType = UNSET
    l: Id | UnsetType = UNSET  # noqa: E741 - Binance's field name
    T: int | UnsetType = UNSET
    m: bool | UnsetType = UNSET
    stream: str | UnsetType = UNSET
    data: Event | UnsetType = UNSET

    def inner(self) -> Event:
        """The aggTrade object itself: ``data`` for a wrapper (rule 6 checks it)."""
        return self if self.data is UNSET else self.data


class Wire(Event, gc=False):
    """What :func:`decode` returns: an :class:`Event` that ignores unknown fields, plus the
    fields of the producer's control replies (``id``, ``result``, ``error``)."""

    data: Wire | UnsetType = UNSET
    id: Any = UNSET
    result: Any = UNSET
    error: Any = UNSET

    def inner(self) -> Wire:
        return self if self.data is UNSET else self.data


class _Plain(Event, forbid_unknown_fields=True, gc=False):
    """An aggTrade with no field beyond Binance's own: when such a line decodes, the decoder
    has read and checked every byte of it (UTF-8 inside strings, JSON syntax outside, no
    skipped value that could nest), so rules 3 and 4 hold without a scan of their own."""

    M: bool | UnsetType = UNSET  # Binance's "was the best price match"; not used
    data: _Plain | UnsetType = UNSET


_decode = msgspec.json.Decoder(Wire).decode
_decode_plain = msgspec.json.Decoder(_Plain).decode


# ------------------------------------------------------------------------- step 1: decode


def decode(message: Message) -> Wire:
    """Rules 1-5: a WebSocket frame, Kafka value, NDJSON line or decoded object -> a Wire."""
    if message is None:
        raise ParseError(Reason.EMPTY, "no value (null record)")
    if isinstance(message, Mapping):
        return from_mapping(message)
    if isinstance(message, str):
        try:
            message = message.encode()
        except UnicodeEncodeError as exc:
            raise ParseError(Reason.BAD_ENCODING, f"text is not valid Unicode: {exc}") from None
    elif isinstance(message, memoryview):
        message = message.tobytes()
    return _decode_any(message)


def decode_bytes(line: bytes | bytearray) -> Event:
    """Rules 2-5 for one line of a body (what the bulk readers call): :func:`decode` without
    the control fields, a Binance-only line taking one decode and no scan."""
    if len(line) > MAX_LINE_BYTES:
        raise ParseError(Reason.TOO_LARGE, f"{len(line)} bytes, over {MAX_LINE_BYTES}")
    try:  # the common case: Binance's fields only (see _Plain: rules 3 and 4 then hold)
        plain = _decode_plain(line)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass
    else:
        if plain.data is UNSET or plain.data.data is UNSET:
            return plain
    return _decode_any(line)


def _decode_any(line: bytes | bytearray) -> Wire:
    if len(line) > MAX_LINE_BYTES:
        raise ParseError(Reason.TOO_LARGE, f"{len(line)} bytes, over {MAX_LINE_BYTES}")
    if not line.isascii():  # (msgspec checks UTF-8 only in the strings it keeps)
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ParseError(Reason.BAD_ENCODING, f"not UTF-8: {bad}") from None
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _depth(line) > MAX_DEPTH:
        raise ParseError(Reason.TOO_DEEP, f"JSON nested over {MAX_DEPTH} levels")
    try:
        return _decode(line)
    except msgspec.ValidationError as exc:
        raise _shape_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        if not line.strip():
            raise ParseError(Reason.EMPTY, "nothing but whitespace") from None
        raise ParseError(Reason.INVALID_JSON, f"not JSON: {exc}") from None
    except RecursionError:
        raise ParseError(Reason.TOO_DEEP, "JSON nested too deeply") from None


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def _depth(line: bytes | bytearray) -> int:
    """Over ``MAX_DEPTH`` exactly when arrays/objects in JSON text (strings skipped) nest
    deeper than that (counting stops there)."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", line)):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_DEPTH:
            break
    return depth


def _object_depth(obj: object, limit: int) -> bool:
    """Whether ``obj`` nests lists/dicts deeper than ``limit`` (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        values = item.values() if isinstance(item, Mapping) else item
        for value in values:  # type: ignore[attr-defined]
            if isinstance(value, Mapping | list | tuple):
                stack.append((value, level + 1))
    return False


def from_mapping(obj: Mapping[str, Any]) -> Wire:
    """An already-decoded object (a REST element) -> a Wire; rules 4-5 as for bytes."""
    if _object_depth(obj, MAX_DEPTH):
        raise ParseError(Reason.TOO_DEEP, f"object nested over {MAX_DEPTH} levels")
    try:
        return msgspec.convert(obj if isinstance(obj, dict) else dict(obj), Wire)
    except msgspec.ValidationError as exc:
        raise _shape_error(str(exc)) from None
    except RecursionError:
        raise ParseError(Reason.TOO_DEEP, "object nested too deeply") from None
    except UnicodeEncodeError as exc:  # a str with a lone surrogate (found by the fuzz tests)
        raise ParseError(Reason.BAD_ENCODING, f"text is not valid Unicode: {exc}") from None


def _shape_error(text: str) -> ParseError:
    at = _AT_FIELD.search(text)
    if at is not None and at.group(1) in _FIELD_REASON:
        return ParseError(_FIELD_REASON[at.group(1)], f"field {at.group(1)!r}: {text}")
    if at is None or at.group(1) == "data":
        return ParseError(Reason.NOT_AN_OBJECT, f"expected an aggTrade object: {text}")
    return ParseError(Reason.INVALID_JSON, text)


# ----------------------------------------------------------------------- step 2: validate


def check(wire: Event, symbol: str | None = None, now_ms: int | None = None) -> Fields:
    """Rules 6-13 (what the Wire's types leave): the validated values of one aggTrade, with
    amounts in 1e-8 units. Every line of a bulk file comes here, so the common case is a few
    identity tests and comparisons; each failure is explained by the helper its rule names.
    """
    w = wire if wire.data is UNSET else _unwrap(wire)  # rule 6
    if w.e != "aggTrade" and w.e is not UNSET:  # rule 7
        raise ParseError(Reason.WRONG_EVENT, f"event type {show(w.e)} is not 'aggTrade'")
    a = w.a
    f = w.f
    l_ = w.l
    t = w.T
    m = w.m
    p = w.p
    q = w.q
    if (  # rule 8
        a is UNSET or p is UNSET or q is UNSET or f is UNSET or l_ is UNSET or t is UNSET
    ) or m is UNSET:
        missing = [n for n in _REQUIRED if getattr(w, n) is UNSET]
        raise ParseError(Reason.MISSING_FIELD, f"field {missing[0]!r} is missing")
    s = w.s
    if symbol is not None or s not in _known_symbols:  # rule 9
        s = _symbol(s, symbol)
    if f > l_ or l_ - f >= MAX_SPAN:  # rule 10 (types and bounds: Wire)
        _id_range(f, l_)
    p8 = _prices.get(p)  # rule 11 (prices repeat a lot: a dict hit beats re-reading)
    if p8 is None:
        p8 = _price(p)
    q8 = read_units("q", q)
    limit = MAX_TIME_MS if now_ms is None or now_ms >= _LAST_NOW else now_ms + FUTURE_MS
    if not MIN_TIME_MS <= t < limit:
        t = epoch_ms("T", t, now_ms)  # rule 12: us, or out of the window
    e = w.E
    if e is not UNSET and not MIN_TIME_MS <= e < limit:
        epoch_ms("E", e, now_ms)
    # rule 13: Wire (m is a bool). s is a str: _symbol's, or one of _known_symbols (all str).
    return s, a, p8, q8, f, l_, t, m  # type: ignore[return-value]


_prices: dict[str, int] = {}


def _price(text: str) -> int:
    units = read_units("p", text)
    if len(_prices) >= 1 << 16:
        _prices.clear()
    _prices[text] = units
    return units


def _id_range(f: int, l_: int) -> None:
    if f > l_:
        raise ParseError(Reason.ID_ORDER, f"first trade id {f} > last trade id {l_}")
    raise ParseError(Reason.BAD_ID, f"trade ids {f}..{l_} span over {MAX_SPAN} trades")


def _unwrap(wire: Event) -> Event:
    inner = wire.inner()
    if inner.data is not UNSET:
        raise ParseError(Reason.NOT_AN_OBJECT, "a wrapper inside a wrapper")
    stream = wire.stream
    if stream is UNSET:
        raise ParseError(Reason.NOT_AN_OBJECT, "a wrapper without a stream name")
    if inner.s is not UNSET and stream.partition("@")[0].upper() != inner.s:
        raise ParseError(Reason.BAD_SYMBOL, f"stream {show(stream)} carries symbol {show(inner.s)}")
    return inner


_known_symbols: set[str | UnsetType] = (
    set()
)  # symbols rule 9 already accepted (a few hundred at most)


def _symbol(s: str | UnsetType, expected: str | None) -> str:
    if s is UNSET:
        if expected is None:
            raise ParseError(Reason.MISSING_FIELD, "field 's' is missing")
        s = expected
    if not _SYMBOL.fullmatch(s):
        raise ParseError(Reason.BAD_SYMBOL, f"symbol {show(s)} is not 1-20 of A-Z0-9")
    if expected is not None and s != expected:
        raise ParseError(Reason.BAD_SYMBOL, f"symbol {s!r} is not the expected {expected!r}")
    if len(_known_symbols) < 10_000:
        _known_symbols.add(s)
    return s


def epoch_ms(field: str, value: int, now_ms: int | None = None) -> int:
    """Rule 12: an epoch time in ms or us (by magnitude) -> ms inside the accepted window."""
    if value >= MICROS_FROM:
        value //= 1000
    limit = MAX_TIME_MS if now_ms is None else min(MAX_TIME_MS, now_ms + FUTURE_MS)
    if not MIN_TIME_MS <= value < limit:
        raise ParseError(
            Reason.BAD_TIME, f"{field} {show(value)} ms is outside {MIN_TIME_MS}..{limit}"
        )
    return value


def to_trade(fields: Fields) -> Trade:
    s, a, p8, q8, f, l_, t, m = fields
    return Trade(s, a, units_to_decimal(p8), units_to_decimal(q8), f, l_, t, m)


def validate(wire: Event, symbol: str | None = None, now_ms: int | None = None) -> Trade:
    """Rules 6-13 -> the :class:`Trade`. ``symbol``: the caller's (REST, CSV); ``now_ms``:
    the shell's clock, bounding trade time to what Kafka accepts."""
    return to_trade(check(wire, symbol, now_ms))


def parse_event(message: Message, symbol: str | None = None, now_ms: int | None = None) -> Trade:
    """Both steps: one message -> a :class:`Trade` (or :class:`ParseError`)."""
    return to_trade(check(decode(message), symbol, now_ms))


def trade_from_object(
    obj: Mapping[str, Any], symbol: str | None = None, now_ms: int | None = None
) -> Trade:
    """A decoded object (a REST element, which carries no ``s``) -> a :class:`Trade`."""
    return to_trade(check(from_mapping(obj), symbol, now_ms))


# ------------------------------------------------------------------ data-dump CSV rows

CSV_COLUMNS = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
)
_CSV_INT = re.compile(r"[0-9]{1,19}")
_CSV_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def is_csv_header(fields: Sequence[str]) -> bool:
    return bool(fields) and fields[0].strip().lower() == CSV_COLUMNS[0]


def csv_wire(fields: Sequence[str]) -> Wire:
    """A data-dump row (7 or 8 columns) -> a Wire for step 2; a cell that is not what its
    column holds stays text, so that step 2 names it (``bad_id``, ``bad_time``, ...)."""
    if len(fields) not in (7, 8):
        raise ParseError(Reason.BAD_CSV, f"expected 7 or 8 columns, got {len(fields)}")
    a, p, q, f, l_, t, m = (cell.strip() for cell in fields[:7])
    return from_mapping(
        {
            "a": _csv_int(a),
            "p": p,
            "q": q,
            "f": _csv_int(f),
            "l": _csv_int(l_),
            "T": _csv_int(t),
            "m": _CSV_BOOLS.get(m.lower(), m),
        }
    )


def _csv_int(text: str) -> int | str:
    return int(text) if _CSV_INT.fullmatch(text) else text


def parse_csv_row(fields: Sequence[str], symbol: str, now_ms: int | None = None) -> Trade:
    """A data-dump CSV row -> a :class:`Trade` of ``symbol``."""
    return validate(csv_wire(fields), symbol, now_ms)


# ------------------------------------------------------------------------- back to JSON


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
