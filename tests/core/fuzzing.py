"""Fuzzing material shared by the hypothesis tests, the atheris target and the shell tests.

- :func:`reference`: the accepted-input rules of ``core/parse.py`` written again, as plainly as
  possible, on top of Python's own ``json`` module (not msgspec) and ``Decimal`` of an ASCII
  string: the oracle every entry point is compared with.
- :func:`mutated`: a hypothesis strategy: a *valid* event with one field replaced by arbitrary
  text/JSON (unicode digits, NaN, floats, huge ints, nesting, invalid UTF-8, megabyte strings).
- :func:`bad_lines`: the same catalogue driven by a seeded ``random.Random``, for tests that
  push thousands of lines through a real component.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import strategies as st

from tradepipe.core import Trade

BASE_T = 1_732_406_400_000  # 2024-11-24 00:00:00 UTC
FIELDS = ("e", "E", "s", "a", "p", "q", "f", "l", "T", "m")
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}", re.ASCII)
_AMOUNT = re.compile(r"[0-9]{1,20}(?:\.[0-9]+)?", re.ASCII)
MAX_ID, MAX_SPAN = 2**53 - 1, 2**24
MIN_MS, MAX_MS, FUTURE_MS = 1_262_304_000_000, 4_102_444_800_000, 3_600_000

# ------------------------------------------------------------------------------ the oracle


class Refused(Exception):
    pass


def _no_constants(name: str) -> Any:
    raise Refused(f"JSON has no {name}")


def reference(raw: bytes, symbol: str | None = None, now_ms: int | None = None) -> Trade | None:
    """What the documented rules make of one line: a Trade, or None (refused)."""
    if len(raw) > 64 * 1024:
        return None
    try:
        obj = json.loads(
            raw, parse_constant=_no_constants, parse_int=_int_or_huge, object_pairs_hook=_Obj
        )
        _no_surrogates(obj)
    except (ValueError, RecursionError, Refused):  # UnicodeDecodeError is a ValueError
        return None
    return reference_object(obj, symbol, now_ms)


MAX_DEPTH = 32


def _too_deep(obj: Any, level: int = 1) -> bool:
    if level > MAX_DEPTH:
        return True
    children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    return any(_too_deep(c, level + 1) for c in children if isinstance(c, dict | list))


class _Obj(dict[str, Any]):
    """A JSON object as ``json`` gives it (of repeated keys the last wins), remembering the
    earlier values of repeated keys: the decoder type-checks every occurrence of a field."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        seen: set[str] = set()
        self.earlier: list[tuple[str, Any]] = []
        for key, value in reversed(pairs):
            if key in seen:
                self.earlier.append((key, value))
            seen.add(key)


class Huge:
    """An integer too long for ``int()`` (over 4,000 digits): no field's type accepts it."""


def _int_or_huge(text: str) -> int | Huge:
    return Huge() if len(text) > 4000 else int(text)


def _no_surrogates(obj: Any) -> None:
    """JSON escapes can spell a lone surrogate, which is no Unicode text (refused)."""
    if isinstance(obj, str):
        obj.encode("utf-8")  # UnicodeEncodeError is a ValueError
    elif isinstance(obj, list):
        for item in obj:
            _no_surrogates(item)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _no_surrogates(key)
            _no_surrogates(value)


def reference_object(obj: Any, symbol: str | None = None, now_ms: int | None = None) -> Any:
    if isinstance(obj, dict | list) and _too_deep(obj):
        return None
    try:
        return _reference(obj, symbol, now_ms)
    except Refused:
        return None


def _int(value: Any) -> bool:
    return type(value) is int


def _reference(obj: Any, symbol: str | None, now_ms: int | None) -> Trade:
    def need(ok: bool) -> None:
        if not ok:
            raise Refused

    kinds = {"e": str, "E": int, "T": int, "s": str, "stream": str, "m": bool, "p": str, "q": str}

    def typed_value(key: str, value: Any) -> None:
        if key in kinds:
            need(type(value) is kinds[key])
        elif key in ("a", "f", "l"):
            need(_int(value) and 0 <= value <= MAX_ID)
        elif key == "data":
            typed(value)

    def typed(obj: Any) -> None:
        """What the decoder's types already refuse, in the wrapper and in the event (every
        occurrence of a repeated field too: the last one wins only if all pass)."""
        need(isinstance(obj, dict))
        for key, value in [*obj.items(), *getattr(obj, "earlier", [])]:
            typed_value(key, value)

    typed(obj)
    if "data" in obj:
        inner = obj["data"]
        typed(inner)
        need("stream" in obj and "data" not in inner)
        if "s" in inner:
            need(obj["stream"].partition("@")[0].upper() == inner["s"])
        obj = inner
    need(obj.get("e", "aggTrade") == "aggTrade")
    need(all(k in obj for k in ("a", "p", "q", "f", "l", "T", "m")))
    s = obj.get("s", symbol)
    need(s is not None and _SYMBOL.fullmatch(s) is not None)
    need(symbol is None or s == symbol)
    a, f, l_ = obj["a"], obj["f"], obj["l"]
    need(f <= l_ and l_ - f < MAX_SPAN)
    amounts = []
    for key in ("p", "q"):
        text = obj[key]
        need(len(text) <= 64 and _AMOUNT.fullmatch(text) is not None)
        value = Decimal(text)  # an ASCII decimal: exact
        need(value > 0 and value == value.quantize(Decimal("1e-8")))
        amounts.append(value)
    limit = MAX_MS if now_ms is None else min(MAX_MS, now_ms + FUTURE_MS)
    times = []
    for key in ("T", "E"):
        if key in obj:
            t = obj[key]
            need(_int(t))
            t = t // 1000 if t >= 10**14 else t
            need(MIN_MS <= t < limit)
            times.append(t)
    return Trade(s, a, amounts[0], amounts[1], f, l_, times[0], obj["m"])


# ------------------------------------------------------------------ the mutation catalogue


def valid_event(a: int = 3_300_000_000, t: int = BASE_T + 3, **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "e": "aggTrade", "E": t + 2, "s": "BTCUSDT", "a": a, "p": "97123.45000000",
        "q": "0.01200000", "f": 4_200_000_000 + 3 * (a % 10**6), "l": 4_200_000_002
        + 3 * (a % 10**6), "T": t, "m": a % 2 == 0, "M": True,
    }  # fmt: skip
    ev.update(over)
    return ev


def encode(ev: dict[str, Any], raw: dict[str, bytes] | None = None) -> bytes:
    """An event as JSON bytes; ``raw`` values are spliced in verbatim (NaN, bad UTF-8...)."""
    raw = raw or {}
    parts = [
        b'"%s":%s' % (k.encode(), raw[k] if k in raw else msgspec.json.encode(v))
        for k, v in ev.items()
    ]
    parts += [b'"%s":%s' % (k.encode(), v) for k, v in raw.items() if k not in ev]
    return b"{" + b",".join(parts) + b"}"


MEGA = 1_000_000
UNICODE_DIGITS = "²³¹¼½١٢٣٤٥٦٧٨٩٠۱۲۳०१२३০১২৩๐๑๒๓０１２３４５６７８９𝟎𝟏𝟐①②⑴⒈"
NASTY_TEXT = [
    "", " ", ".", "1.", ".5", "0", "00", "0.0", "0.00000000", "0.000000001", "1.000000001",
    "-1", "+1", "1e5", "1E-5", " 1", "1 ", "1_0", "0x10", "NaN", "nan", "Infinity", "inf",
    "1,5", "1..5", "1.5.5", "١", "1.²", "1.١", "1.５", "٣.١٤", "1\n", "1\x00", "\ufeff1",
    "9" * 20, "9" * 21, "9" * 20 + "." + "9" * 8, "1." + "0" * 60, "1." + "0" * 70,
    "0." + "0" * 7 + "1", "1" * MEGA, "btcusdt", "BTC USDT", "BTCUSDT", "A" * 21,
    "aggTrade", "trade", "true", "\ud800",
]  # fmt: skip
NASTY_RAW = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1.0", b"-0", b"0", b"-1", b"1e3",
    b"true", b"false", b"null", b"[]", b"{}", b'"\xff\xfe"', b'"\xc3"', b'"\xed\xa0\x80"',
    b'"\\ud800"', b'"\\u0031"', b"[" * 3000 + b"]" * 3000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"[" * 70_000, b"9" * 5000, str(2**53).encode(), str(2**63).encode(), str(2**64).encode(),
    str(10**30).encode(), str(-(2**63)).encode(), b"4102444800000", b"1262303999999",
    b"1732406400000000", b"99999999999999999999", b'"' + b"a" * MEGA + b'"', b"\xff",
]  # fmt: skip


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=12,
    )


def _digit_texts() -> st.SearchStrategy[str]:
    chars = st.sampled_from("0123456789." + UNICODE_DIGITS)
    return st.text(chars, min_size=1, max_size=30)


def replacement() -> st.SearchStrategy[bytes]:
    """An arbitrary JSON value (or not-quite JSON) as bytes."""
    return st.one_of(
        st.sampled_from(NASTY_RAW),
        st.sampled_from(NASTY_TEXT).map(_json_str),
        _digit_texts().map(_json_str),
        st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: _json_str(str(d))),
        st.decimals(allow_nan=False, allow_infinity=False, places=8)
        .filter(lambda d: d > 0)
        .map(lambda d: _json_str(format(d, "f"))),
        st.floats().map(lambda x: repr(x).encode()),
        st.integers().map(lambda n: str(n).encode()),
        _json_values().map(msgspec.json.encode),
        st.text(max_size=40).map(_json_str),
        st.binary(max_size=20).map(lambda b: b'"' + b.replace(b'"', b"") + b'"'),
    )


def _json_str(text: str) -> bytes:
    try:
        return msgspec.json.encode(text)
    except UnicodeEncodeError:  # a lone surrogate: as JSON escapes, which msgspec keeps
        return json.dumps(text).encode()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event with one field replaced (or removed, or added twice), or a wrapper."""
    ev = valid_event(
        a=draw(st.integers(0, 10**9)), t=BASE_T + draw(st.integers(0, 5 * 60_000)), M=True
    )
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    field = draw(st.sampled_from((*FIELDS, "M", "stream", "data", "x")))
    if kind == 1:
        ev.pop(field, None)
        return encode(ev)
    line = encode(ev, {field: draw(replacement())})
    if kind == 2:
        stream = draw(st.sampled_from(["btcusdt@aggTrade", "ethusdt@aggTrade", "x"]))
        return b'{"stream":"%s","data":%s}' % (stream.encode(), line)
    return line


def bad_lines(seed: int, count: int) -> list[bytes]:
    """``count`` lines the rules refuse, drawn from the catalogue by a seeded generator."""
    rng = random.Random(seed)
    out: list[bytes] = []
    while len(out) < count:
        ev = valid_event(a=rng.randrange(10**9), t=BASE_T + rng.randrange(5 * 60_000))
        field = rng.choice(FIELDS)
        pick = rng.random()
        if pick < 0.5:
            value = rng.choice(NASTY_RAW)
        elif pick < 0.8:
            value = _json_str(rng.choice(NASTY_TEXT))
        else:
            text = "".join(rng.choice("0123456789." + UNICODE_DIGITS) for _ in range(6))
            value = _json_str(text)
        line = encode(ev, {field: value})
        if b"\n" in line or b"\r" in line or reference(line) is not None:
            continue
        out.append(line)
    return out
