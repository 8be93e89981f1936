"""The one decimal reader: a price or quantity string -> an integer count of 1e-8 units.

Rules (the only ones; :class:`~tradepipe.core.trade.Trade` and the bulk path both use this):

1. The value is a ``str`` of ASCII digits ``0-9`` with at most one ``.`` that has digits on both
   sides: ``"97123.45"``, ``"1"``, ``"0.00000001"``. Nothing else: no sign, exponent, spaces,
   ``_``, ``NaN``/``Infinity``, leading or trailing dot, and no other script's digits
   (Arabic-Indic U+0661, full-width U+FF15, superscript U+00B2, which ``str.isdigit`` and
   ``Decimal`` take) -> ``bad_decimal``.
2. At most ``MAX_TEXT`` characters (so a megabyte string costs nothing) and at most
   ``MAX_INTEGER_DIGITS`` digits before the dot (leading zeros count) -> else ``out_of_range``.
3. At most 8 decimal places of significance: digits after the 8th decimal must all be ``0``
   (``"0.10000000000"`` is 0.1) -> else ``too_precise``.
4. Strictly positive -> else ``not_positive``.

The result is exact: ``read_units(t) == Decimal(t) * 10**8`` for every accepted ``t``
(a property test checks it), and :func:`units_to_decimal` turns it back into a ``Decimal``.
"""

from __future__ import annotations

import reprlib
from decimal import Decimal

from tradepipe.core.errors import ParseError, Reason

MAX_DECIMAL_PLACES = 8
MAX_INTEGER_DIGITS = 20
MAX_TEXT = 64
UNIT = 10**MAX_DECIMAL_PLACES
_POW10 = [10 ** (MAX_DECIMAL_PLACES - n) for n in range(MAX_DECIMAL_PLACES + 1)]


def read_units(field: str, text: object) -> int:
    """A plain decimal string -> the value in units of 1e-8 (rules 1-4), or ParseError."""
    if type(text) is not str:
        raise ParseError(Reason.BAD_DECIMAL, f"{field} {show(text)} is not a decimal string")
    # The common case in one int(): "97123.45000000" -> int("9712345000000") * 10**0.
    whole, dot, frac = text.partition(".")
    if (
        0 < len(frac) <= MAX_DECIMAL_PLACES
        and 0 < len(whole) <= MAX_INTEGER_DIGITS
        and whole.isdigit()
        and frac.isdigit()
        and text.isascii()
    ):
        units: int = int(whole + frac) * _POW10[len(frac)]
    else:
        units = _read_other(field, text, whole, dot, frac)
    if units == 0:
        raise ParseError(Reason.NOT_POSITIVE, f"{field} {text} is not positive")
    return units


def _read_other(field: str, text: str, whole: str, dot: str, frac: str) -> int:
    """Rules 1-3 for every text the common case does not cover, naming what is wrong."""
    if len(text) > MAX_TEXT:
        raise ParseError(Reason.OUT_OF_RANGE, f"{field} text is over {MAX_TEXT} characters")
    # isascii() and isdigit() together are exactly [0-9]+ (isdigit alone takes any script)
    if not (
        whole.isdigit() and whole.isascii() and (not dot or (frac.isdigit() and frac.isascii()))
    ):
        raise ParseError(Reason.BAD_DECIMAL, f"{field} {show(text)} is not a plain decimal string")
    if len(whole) > MAX_INTEGER_DIGITS:
        raise ParseError(
            Reason.OUT_OF_RANGE, f"{field} {text} has over {MAX_INTEGER_DIGITS} integer digits"
        )
    if frac[MAX_DECIMAL_PLACES:].strip("0"):
        raise ParseError(
            Reason.TOO_PRECISE, f"{field} {text} has more than {MAX_DECIMAL_PLACES} decimal places"
        )
    frac = frac[:MAX_DECIMAL_PLACES]
    units: int = int(whole + frac) * _POW10[len(frac)]
    return units


def units_to_decimal(units: int) -> Decimal:
    """Units of 1e-8 -> the exact ``Decimal``, at 8 places (``150000000`` -> ``1.50000000``)."""
    return Decimal(units).scaleb(-MAX_DECIMAL_PLACES)


def show(value: object) -> str:
    """A short, safe repr for messages: bounded depth and size, and no ``str(int)`` of more
    than 4,300 digits (which Python refuses)."""
    if type(value) is int and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 60
