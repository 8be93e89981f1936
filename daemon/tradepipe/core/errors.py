"""The one error the core raises for bad input, and its reasons.

Every way an input can be wrong maps to exactly one machine-readable :class:`Reason` (a short,
low-cardinality code, safe as a Prometheus label) plus a human message naming the field.
``Reason`` is a ``StrEnum``: a misspelt reason is a type error (mypy) and an ``AttributeError``,
never a silent new label::

    ParseError
      reason: Reason
        empty            a null value, or a record/line with nothing but whitespace
        too_large        a line or record over MAX_LINE_BYTES (64 KiB)
        bad_encoding     the bytes are not UTF-8 (or a str holds lone surrogates)
        too_deep         JSON nested deeper than the decoder allows
        invalid_json     the bytes are UTF-8 but not JSON
        not_an_object    the JSON is not an object, or a wrapper's "data" is not one
        wrong_event      "e" is present but is not "aggTrade"
        missing_field    a required field is absent
        bad_symbol       symbol is not [A-Z0-9]{1,20}, or disagrees with the stream/caller
        bad_id           a, f or l is not an integer in 0 .. 2^53-1, or l - f spans too many
        id_order         f > l
        bad_decimal      p or q is not a plain ASCII decimal string ("123.45")
        not_positive     p or q is zero
        too_precise      p or q has non-zero digits beyond 8 decimal places
        out_of_range     p or q has more than 20 integer digits (or its text is too long)
        bad_time         T (or E) is not an epoch time in ms or us inside the accepted window
        bad_flag         m is not a boolean
        bad_csv          a data-dump CSV row without the expected columns

Anything else raised by the core is a bug and should surface.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    BAD_ENCODING = "bad_encoding"
    TOO_DEEP = "too_deep"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    WRONG_EVENT = "wrong_event"
    MISSING_FIELD = "missing_field"
    BAD_SYMBOL = "bad_symbol"
    BAD_ID = "bad_id"
    ID_ORDER = "id_order"
    BAD_DECIMAL = "bad_decimal"
    NOT_POSITIVE = "not_positive"
    TOO_PRECISE = "too_precise"
    OUT_OF_RANGE = "out_of_range"
    BAD_TIME = "bad_time"
    BAD_FLAG = "bad_flag"
    BAD_CSV = "bad_csv"


REASONS = frozenset(Reason)


class ParseError(ValueError):
    """An input that cannot be accepted, with its :class:`Reason`."""

    __slots__ = ("message", "reason")

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = Reason(reason)  # a str that is not a Reason raises ValueError: a bug
        self.message = message
