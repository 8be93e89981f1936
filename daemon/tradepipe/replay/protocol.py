"""Binance's WebSocket market-stream protocol, without I/O: stream names, the JSON control
requests (``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``,
``GET_PROPERTY``) and their replies, as documented in ``web-socket-streams.md``.

Rules:
1. Stream names are lowercase; ``<symbol>@aggTrade`` is the only stream with data here, but any
   well-formed name can be subscribed to (as on Binance, it then simply carries nothing).
2. A request gets exactly one reply: ``{"result":..,"id":..}`` on success, else
   ``{"code":N,"msg":"..","id":..}`` with Binance's codes (2 invalid request, 3 invalid JSON).
3. Subscriptions are an ordered set; at most ``max_streams`` (1024 on Binance) per connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

STREAM_RE = re.compile(r"[a-z0-9!][a-zA-Z0-9_@!.\-]{0,127}")
AGG_TRADE_SUFFIX = "@aggTrade"
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_STRING_RE = re.compile(r"[A-Za-z0-9]{1,36}")


def stream_of(symbol: str) -> str:
    """``BTCUSDT`` -> ``btcusdt@aggTrade``."""
    return symbol.lower() + AGG_TRADE_SUFFIX


def is_valid_stream(name: str) -> bool:
    """Well-formed, with a lowercase symbol part (rule 1)."""
    head = name.split("@", 1)[0]
    return bool(STREAM_RE.fullmatch(name)) and (head.startswith("!") or head == head.lower())


@dataclass(slots=True)
class Subscriptions:
    """A connection's streams and its ``combined`` property (payload wrapping)."""

    combined: bool
    streams: dict[str, None] = field(default_factory=dict)  # insertion-ordered set

    def __contains__(self, stream: str) -> bool:
        return stream in self.streams


@dataclass(frozen=True, slots=True)
class Outcome:
    reply: bytes
    added: tuple[str, ...] = ()


def _error(code: int, msg: str, request_id: Any = None, with_id: bool = True) -> Outcome:
    body: dict[str, Any] = {"code": code, "msg": msg}
    if with_id:
        body["id"] = request_id
    return Outcome(msgspec.json.encode(body))


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is int:
        return -(2**63) <= value < 2**63
    return isinstance(value, str) and bool(_ID_STRING_RE.fullmatch(value))


def handle_request(text: str | bytes, subs: Subscriptions, max_streams: int = 1024) -> Outcome:
    """Apply one client text message to ``subs`` and return the reply to send (rule 2)."""
    try:
        request = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        return _error(3, f"Invalid JSON: {exc}", with_id=False)
    if not isinstance(request, dict):
        return _error(2, "Invalid request: expected a JSON object", with_id=False)
    request_id = request.get("id")
    if not _valid_id(request_id):
        return _error(2, "Invalid request: request ID must be an unsigned integer", with_id=False)
    method = request.get("method")
    if method is None:
        return _error(2, "Invalid request: missing field `method`", request_id)
    if method not in METHODS:
        expected = ", ".join(f"`{m}`" for m in METHODS)
        return _error(
            2,
            f"Invalid request: unknown variant `{method}`, expected one of {expected}",
            request_id,
        )
    params = request.get("params", [])
    if not isinstance(params, list):
        return _error(2, "Invalid request: params must be a list", request_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return _subscribe(method, params, subs, request_id, max_streams)
    if method == "LIST_SUBSCRIPTIONS":
        return _result(list(subs.streams), request_id)
    return _property(method, params, subs, request_id)


def _result(result: Any, request_id: Any) -> Outcome:
    return Outcome(msgspec.json.encode({"result": result, "id": request_id}))


def _subscribe(
    method: str, params: list[Any], subs: Subscriptions, request_id: Any, max_streams: int
) -> Outcome:
    for name in params:
        if not isinstance(name, str) or not is_valid_stream(name):
            return _error(2, f"Invalid request: invalid stream name {name!r}", request_id)
    if method == "UNSUBSCRIBE":
        for name in params:
            subs.streams.pop(name, None)
        return _result(None, request_id)
    added = tuple(dict.fromkeys(n for n in params if n not in subs.streams))
    if len(subs.streams) + len(added) > max_streams:
        return _error(2, f"Invalid request: too many streams (max {max_streams})", request_id)
    for name in added:
        subs.streams[name] = None
    return Outcome(_result(None, request_id).reply, added)


def _property(method: str, params: list[Any], subs: Subscriptions, request_id: Any) -> Outcome:
    if not params or not isinstance(params[0], str):
        return _error(2, "Invalid request: property name must be a string", request_id)
    if params[0] != "combined":
        return _error(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        return _result(subs.combined, request_id)
    if len(params) != 2:
        return _error(2, "Invalid request: too many parameters", request_id)
    if type(params[1]) is not bool:
        return _error(1, "Invalid value type: expected Boolean", with_id=False)
    subs.combined = params[1]
    return _result(None, request_id)


def streams_from_path(raw: str) -> list[str]:
    """``a@aggTrade/b@aggTrade`` (URL path or ``streams=`` value) -> stream names, in order."""
    return list(dict.fromkeys(s for s in raw.split("/") if s))
