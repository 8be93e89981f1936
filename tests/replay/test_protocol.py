"""Binance's stream control messages, without sockets (table-driven)."""

from __future__ import annotations

import msgspec
import pytest

from tradepipe.replay.protocol import Subscriptions, handle_request, is_valid_stream


def reply(text: str, subs: Subscriptions, max_streams: int = 1024) -> object:
    return msgspec.json.decode(handle_request(text, subs, max_streams).reply)


def test_subscribe_list_unsubscribe() -> None:
    subs = Subscriptions(combined=False)
    out = handle_request(
        '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","ethusdt@aggTrade"],"id":1}', subs
    )
    assert msgspec.json.decode(out.reply) == {"result": None, "id": 1}
    assert out.added == ("btcusdt@aggTrade", "ethusdt@aggTrade")
    again = handle_request('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":2}', subs)
    assert again.added == ()  # already subscribed: no new stream
    assert reply('{"method":"LIST_SUBSCRIPTIONS","id":3}', subs) == {
        "result": ["btcusdt@aggTrade", "ethusdt@aggTrade"],
        "id": 3,
    }
    assert reply('{"method":"UNSUBSCRIBE","params":["btcusdt@aggTrade"],"id":"x7"}', subs) == {
        "result": None,
        "id": "x7",
    }
    assert list(subs.streams) == ["ethusdt@aggTrade"]


def test_combined_property() -> None:
    subs = Subscriptions(combined=False)
    assert reply('{"method":"GET_PROPERTY","params":["combined"],"id":1}', subs) == {
        "result": False,
        "id": 1,
    }
    assert reply('{"method":"SET_PROPERTY","params":["combined",true],"id":2}', subs) == {
        "result": None,
        "id": 2,
    }
    assert subs.combined is True


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("{not json", 3, "Invalid JSON"),
        ("[1,2]", 2, "expected a JSON object"),
        ('{"params":[],"id":1}', 2, "missing field `method`"),
        ('{"method":"SUBSCRIBEX","params":[],"id":1}', 2, "unknown variant"),
        ('{"method":"SUBSCRIBE","params":"btcusdt@aggTrade","id":1}', 2, "params"),
        ('{"method":"SUBSCRIBE","params":["BTCUSDT@aggTrade"],"id":1}', 2, "invalid stream"),
        ('{"method":"SUBSCRIBE","params":[7],"id":1}', 2, "invalid stream"),
        ('{"method":"SUBSCRIBE","params":[],"id":{"a":1}}', 2, "request ID"),
        ('{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}', 1, "Boolean"),
        ('{"method":"GET_PROPERTY","params":["colour"],"id":1}', 0, "Unknown property"),
    ],
)
def test_errors_carry_binance_codes(text: str, code: int, fragment: str) -> None:
    subs = Subscriptions(combined=True)
    body = reply(text, subs)
    assert isinstance(body, dict)
    assert body["code"] == code
    assert fragment in body["msg"]
    assert not subs.streams


def test_stream_limit() -> None:
    subs = Subscriptions(combined=True)
    body = reply('{"method":"SUBSCRIBE","params":["a@aggTrade","b@aggTrade"],"id":1}', subs, 1)
    assert isinstance(body, dict) and body["code"] == 2 and "too many streams" in body["msg"]
    assert not subs.streams


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("btcusdt@aggTrade", True),
        ("btcusdt@kline_1m", True),
        ("!miniTicker@arr", True),
        ("BTCUSDT@aggTrade", False),
        ("", False),
        ("btc usdt@aggTrade", False),
    ],
)
def test_stream_names(name: str, ok: bool) -> None:
    assert is_valid_stream(name) is ok
