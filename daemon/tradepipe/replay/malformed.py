"""Malformed messages to mix into the feed (``--malformed N --seed S``).

Each is derived from a real event about to be published, broken in one specific way, so a
client sees something close to what a buggy or corrupted feed would send. Every one of them is
rejected by :func:`tradepipe.core.parse_event` (a test checks all kinds), so a correct client
quarantines exactly the messages it was sent and none of them reaches a row.

A message is either *structured* (a JSON object, wrapped ``{"stream":..,"data":..}`` for combined
connections like any event) or *raw* bytes sent verbatim (not JSON, truncated JSON...). Every
frame is valid UTF-8: a WebSocket client refuses a text frame that is not (close code 1007),
so invalid UTF-8 never reaches a parser through the feed (tests/core feeds it directly).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Malformed:
    kind: str
    structured: Event | None = None  # JSON object, wrapped for combined streams
    raw: bytes | None = None  # sent verbatim on every connection


def _with(event: Event, **changes: Any) -> Event:
    out = dict(event)
    out.update(changes)
    return out


def _without(event: Event, name: str) -> Event:
    return {k: v for k, v in event.items() if k != name}


def _truncated(event: Event, rng: random.Random) -> Malformed:
    text = msgspec.json.encode(event)
    return Malformed("truncated_json", raw=text[: rng.randrange(1, len(text) - 1)])


def _spliced(event: Event, name: str, value: bytes) -> bytes:
    """The event's JSON with field ``name`` set to ``value`` verbatim (what a JSON encoder
    will not write: integers over 64 bits, NaN, nesting)."""
    return b"{%s}" % b",".join(
        b'"%s":%s' % (k.encode(), value if k == name else msgspec.json.encode(v))
        for k, v in {**event, name: None}.items()
    )


def _huge_id(event: Event, rng: random.Random) -> Malformed:
    value = rng.choice([2**53, 2**63, 2**64, 10**30])
    return Malformed("huge_id", raw=_spliced(event, rng.choice("afl"), str(value).encode()))


def _deep(event: Event, rng: random.Random) -> Malformed:
    depth = rng.choice([33, 1000, 20_000])
    return Malformed("deep_nesting", raw=_spliced(event, "x", b"[" * depth + b"]" * depth))


def _garbage(event: Event, rng: random.Random) -> Malformed:
    junk = bytes(rng.choice(b"abcdefxyz0123456789 <>!?#") for _ in range(rng.randrange(1, 40)))
    return Malformed("not_json", raw=b"~" + junk)


_KINDS: dict[str, Callable[[Event, random.Random], Malformed]] = {
    "truncated_json": _truncated,
    "not_json": _garbage,
    "not_an_object": lambda e, r: Malformed(
        "not_an_object", raw=msgspec.json.encode([e["a"], e["p"]])
    ),
    "missing_field": lambda e, r: Malformed(
        "missing_field", _without(e, r.choice(["a", "p", "q", "f", "l", "T", "m"]))
    ),
    "wrong_event": lambda e, r: Malformed("wrong_event", _with(e, e="trade")),
    "bad_decimal": lambda e, r: Malformed(
        "bad_decimal", _with(e, p=r.choice(["12.3.4", "-5.0", "1e5", "", " 1.0", "NaN"]))
    ),
    "not_positive": lambda e, r: Malformed("not_positive", _with(e, q="0.00000000")),
    "too_precise": lambda e, r: Malformed("too_precise", _with(e, q="0.000000001")),
    "bad_id": lambda e, r: Malformed("bad_id", _with(e, a=r.choice([-1, "12", 1.5, None]))),
    "id_order": lambda e, r: Malformed("id_order", _with(e, f=e["l"] + 1)),
    "bad_time": lambda e, r: Malformed("bad_time", _with(e, T=r.choice(["now", 12, -1]))),
    "bad_flag": lambda e, r: Malformed("bad_flag", _with(e, m=r.choice(["true", 1, None]))),
    # Digits of other scripts: str.isdigit() and Decimal() take them, the core must not.
    "unicode_digits": lambda e, r: Malformed(
        "unicode_digits",
        _with(
            e, **{r.choice("pq"): r.choice(["1.\u00b2", "1.\u0661", "1.\uff15", "\u0661\u0662"])}
        ),
    ),
    "float_amount": lambda e, r: Malformed("float_amount", _with(e, p=float(e["p"]))),
    "not_a_number": lambda e, r: Malformed("not_a_number", raw=_spliced(e, "p", b"NaN")),
    "huge_id": _huge_id,
    "far_future": lambda e, r: Malformed("far_future", _with(e, T=4_102_444_800_000)),
    "deep_nesting": _deep,
    "too_large": lambda e, r: Malformed("too_large", _with(e, x="a" * 70_000)),
    "empty": lambda e, r: Malformed("empty", raw=r.choice([b"", b" ", b"\r\n"])),
}
KINDS = tuple(_KINDS)


def make_malformed(event: Event, rng: random.Random, kind: str | None = None) -> Malformed:
    """A malformed variant of ``event`` (a raw aggTrade event object), of ``kind`` or random."""
    return _KINDS[kind if kind is not None else rng.choice(KINDS)](event, rng)


def schedule(count: int, tape_length: int, seed: int) -> dict[int, int]:
    """Where to mix ``count`` malformed messages in: tape position -> how many before it."""
    rng = random.Random(seed)
    plan: dict[int, int] = {}
    if tape_length == 0:
        return plan
    for _ in range(count):
        position = rng.randrange(tape_length)
        plan[position] = plan.get(position, 0) + 1
    return plan
