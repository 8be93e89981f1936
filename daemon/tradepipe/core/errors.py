"""The one error the core raises for bad input.

Every way a trade can be wrong maps to exactly one machine-readable ``reason`` (a short,
low-cardinality code, safe as a Prometheus label) plus a human message naming the field::

    ParseError
      reason in REASONS:
        invalid_json     the bytes are not JSON (or not UTF-8)
        not_an_object    the JSON is not an object, or a wrapper's "data" is not one
        wrong_event      "e" is present but is not "aggTrade"
        missing_field    a required field is absent
        bad_symbol       symbol is not 1-32 upper-case letters/digits, or disagrees with the stream
        bad_id           a, f or l is not a non-negative integer
        id_order         f > l
        bad_decimal      p or q is not a plain decimal string ("123.45")
        not_positive     p or q is zero
        too_precise      p or q has non-zero digits beyond 8 decimal places
        out_of_range     p or q has more than 20 integer digits
        bad_time         T (or E) is not a plausible epoch time in ms or us
        bad_flag         m is not a boolean
        bad_csv          a data-dump CSV row without the expected columns

Anything else raised by the core is a bug and should surface.
"""

from __future__ import annotations

REASONS = frozenset(
    {
        "invalid_json",
        "not_an_object",
        "wrong_event",
        "missing_field",
        "bad_symbol",
        "bad_id",
        "id_order",
        "bad_decimal",
        "not_positive",
        "too_precise",
        "out_of_range",
        "bad_time",
        "bad_flag",
        "bad_csv",
    }
)


class ParseError(ValueError):
    """A trade that cannot be accepted: ``reason`` is a code from ``REASONS``."""

    __slots__ = ("message", "reason")

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:  # a typo here is a bug, not bad input
            raise AssertionError(f"unknown parse error reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
