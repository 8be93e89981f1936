"""Parsing and validation: every accepted form, every rejection reason."""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from tests.core.helpers import BASE_T, event, line

from tradepipe.core import (
    REASONS,
    ParseError,
    Reason,
    Side,
    Trade,
    aggregate,
    parse_csv_row,
    parse_event,
)
from tradepipe.core.parse import to_event, trade_from_object


def test_raw_event_bytes_str_and_dict_agree() -> None:
    raw = line()
    trades = {parse_event(raw), parse_event(raw.decode()), parse_event(event())}
    assert len(trades) == 1
    t = trades.pop()
    assert t == Trade(
        "BTCUSDT",
        3_300_000_000,
        Decimal("97123.45"),
        Decimal("0.012"),
        4_200_000_000,
        4_200_000_002,
        BASE_T + 3,
        True,
    )
    assert t.trade_count == 3


def test_combined_stream_wrapper() -> None:
    wrapped = msgspec.json.encode({"stream": "btcusdt@aggTrade", "data": event()})
    assert parse_event(wrapped) == parse_event(line())
    # key order and whitespace of the wrapper do not matter (slow path)
    assert parse_event(b' { "data": ' + line() + b', "stream": "btcusdt@aggTrade"}') == (
        parse_event(line())
    )


@pytest.mark.parametrize(("m", "side"), [(True, Side.SELL), (False, Side.BUY)])
def test_side_mapping(m: bool, side: Side) -> None:
    # m = true: the buyer was the maker, so the aggressor sold -> a sell.
    assert parse_event(line(m=m)).side is side


def test_microsecond_trade_time_is_floored_to_ms() -> None:
    assert parse_event(line(T=(BASE_T + 3) * 1000 + 999)).time_ms == BASE_T + 3


@pytest.mark.parametrize(
    "text", ["0.00000001", "99999999.99999999", "1", "100000.1", "0.10000000000"]
)
def test_extreme_but_valid_decimals(text: str) -> None:
    assert parse_event(line(p=text, q=text)).price == Decimal(text)


def test_vector_added_fields_are_tolerated() -> None:
    extra = event(
        timestamp="2024-11-24T00:00:00Z",
        topic="aggtrades",
        partition=0,
        offset=7,
        message_key="BTCUSDT",
        headers={},
    )
    assert parse_event(msgspec.json.encode(extra)) == parse_event(line())


DEEP = b'{"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"


def nested(depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    inner = out
    for _ in range(depth):
        inner["data"] = {}
        inner = inner["data"]
    return out


REJECTIONS: list[tuple[str, bytes | str | dict[str, Any] | None]] = [
    ("empty", None),
    ("empty", b""),
    ("empty", b" \r\n\t"),
    ("too_large", line(x="a" * 70_000)),
    ("bad_encoding", b"\xff\xfe"),
    ("bad_encoding", line(s="BTC").replace(b"BTC", b"BT\xc3")),
    ("bad_encoding", line().decode() + "\ud800"),
    ("too_large", b"[" * 100_000),  # the 100,000 levels: RecursionError before
    ("too_deep", DEEP),
    ("too_deep", b"[" * 30_000),
    ("not_an_object", b"[" * 30),  # refused at the first byte
    ("too_deep", {"stream": "btcusdt@aggTrade", "data": nested(5000)}),
    ("too_deep", line(x=1).replace(b'"x":1', b'"x":' + b"[" * 5000 + b"]" * 5000)),
    ("invalid_json", b'{"e":"aggTrade",'),
    ("invalid_json", line(p="1").replace(b'"1"', b"NaN")),
    ("invalid_json", line() + b"x"),
    ("not_an_object", b"[1, 2]"),
    ("not_an_object", msgspec.json.encode({"stream": "btcusdt@aggTrade", "data": [1]})),
    ("wrong_event", line(e="trade")),
    ("missing_field", line(drop=["p"])),
    ("missing_field", line(drop=["s"])),
    ("bad_symbol", line(s="btc usdt")),
    ("bad_symbol", line(s="btcusdt")),
    ("bad_symbol", line(s=42)),
    ("bad_symbol", line(s="A" * 21)),
    ("bad_symbol", line(s="BTCUSDＴ")),
    ("bad_symbol", msgspec.json.encode({"stream": "ethusdt@aggTrade", "data": event()})),
    ("bad_id", line(a=-1)),
    ("bad_id", line(f="7")),
    ("bad_id", line(l=1.5)),
    ("bad_id", line(a=True)),
    ("bad_id", line(a=2**64)),
    ("bad_id", line(a=10**30)),
    ("bad_id", line(l=2**53)),
    ("bad_id", line(f=0, l=2**24)),
    ("bad_id", line(a=1).replace(b'"a":1', b'"a":1e400')),
    ("id_order", line(f=10, l=9)),
    ("bad_decimal", line(p=97123.45)),
    ("bad_decimal", line(q="1e-5")),
    ("bad_decimal", line(p=" 1")),
    ("bad_decimal", line(p="1_000")),
    ("bad_decimal", line(p="NaN")),
    ("bad_decimal", line(p="-1.5")),
    ("bad_decimal", line(p="1.")),
    ("bad_decimal", line(p="١٢")),  # non-ASCII digits
    ("bad_decimal", line(p="1.²")),  # a superscript digit: Decimal() raised InvalidOperation
    ("bad_decimal", line(p="1.١")),  # an Arabic-Indic digit: was accepted as 1.1
    ("bad_decimal", line(p="1.５")),  # full-width: was accepted as 1.5
    ("bad_decimal", line(p=None)),
    ("bad_decimal", line(p=[1])),
    ("not_positive", line(q="0.00000000")),
    ("too_precise", line(q="0.000000001")),
    ("out_of_range", line(p="123456789012345678901.5")),
    ("out_of_range", line(p="1" * 1000)),
    ("bad_time", line(T=12345)),
    ("bad_time", line(T="1732406400003")),
    ("bad_time", line(E=-5)),
    ("bad_time", line(T=2**70)),
    ("bad_time", line(T=4_102_444_800_000)),
    ("bad_flag", line(m="true")),
    ("bad_flag", line(m=1)),
]


@pytest.mark.parametrize(("reason", "message"), REJECTIONS)
def test_every_rejection_reason(reason: str, message: bytes | None) -> None:
    with pytest.raises(ParseError) as info:
        parse_event(message)
    assert info.value.reason == reason
    assert info.value.message  # a human explanation naming the problem


def test_all_reasons_are_exercised() -> None:
    covered = {reason for reason, _ in REJECTIONS} | {"bad_csv"}
    assert covered == REASONS


def test_reasons_are_a_str_enum() -> None:
    assert Reason("empty") is Reason.EMPTY and Reason.EMPTY == "empty"
    with pytest.raises(ValueError, match="not_a_reason"):
        ParseError("not_a_reason", "x")  # type: ignore[arg-type]


def test_trade_time_window_comes_from_the_caller() -> None:
    now = BASE_T + 10_000
    assert parse_event(line(T=now + 3_599_999), now_ms=now).time_ms == now + 3_599_999
    for message in (line(T=now + 3_600_000), line(E=now + 3_600_000)):
        with pytest.raises(ParseError) as info:
            parse_event(message, now_ms=now)
        assert info.value.reason == "bad_time"
    assert parse_event(line(T=now + 3_600_000)).time_ms == now + 3_600_000  # no clock: 2100


def test_wrapper_rules() -> None:
    inner = event()
    for bad in (
        {"stream": 5, "data": inner},
        {"data": inner},
        {"stream": "btcusdt@aggTrade", "data": {"stream": "x", "data": inner}},
    ):
        with pytest.raises(ParseError) as info:
            parse_event(msgspec.json.encode(bad))
        assert info.value.reason == "not_an_object", bad


def test_limits_are_exactly_where_documented() -> None:
    assert parse_event(line(a=2**53 - 1, f=0, l=2**24 - 1)).trade_count == 2**24
    assert parse_event(line(s="A" * 20)).symbol == "A" * 20
    big = "9" * 20 + ".99999999"
    assert parse_event(line(p=big)).price == Decimal(big)
    assert parse_event(line(q="0.100000000000")).quantity == Decimal("0.1")


def test_rest_object_needs_and_checks_the_symbol() -> None:
    rest = {"a": 1, "p": "1.5", "q": "2", "f": 3, "l": 3, "T": BASE_T, "m": False, "M": True}
    assert trade_from_object(rest, "ETHUSDT").symbol == "ETHUSDT"
    with pytest.raises(ParseError, match="missing_field"):
        trade_from_object(rest)
    with pytest.raises(ParseError, match="bad_symbol"):
        trade_from_object({**rest, "s": "BTCUSDT"}, "ETHUSDT")


def test_to_event_round_trips_exact_text() -> None:
    t = parse_event(line(p="60759.60000000"))
    ev = to_event(t)
    assert ev["p"] == "60759.60000000"
    assert parse_event(msgspec.json.encode(ev)) == t


def test_hand_built_trade_with_more_than_8_places_is_refused_by_the_aggregator() -> None:
    # Input goes through validate(); a Trade built by hand that breaks rule 11 is a bug, and
    # the aggregator's exact conversion raises rather than truncating it.
    bad = Trade("BTCUSDT", 1, Decimal("1.123456789"), Decimal(1), 1, 1, BASE_T, True)
    with pytest.raises(decimal.Inexact):
        aggregate([bad])


@pytest.mark.parametrize(
    ("row", "expected_ms"),
    [
        (
            "1031427002,47319.84000000,0.02736000,1189032464,1189032465,1639474150066,True,True",
            1639474150066,
        ),
        (
            "1031427002,47319.84000000,0.02736000,1189032464,1189032465,1639474150066123,true",
            1639474150066,
        ),
    ],
)
def test_csv_rows_ms_and_us(row: str, expected_ms: int) -> None:
    t = parse_csv_row(row.split(","), "BTCUSDT")
    assert (t.time_ms, t.buyer_is_maker, t.trade_count) == (expected_ms, True, 2)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("1,2,3", "bad_csv"),
        ("x,47319.84,0.1,1,1,1639474150066,True", "bad_id"),
        ("1,47319.84,0.1,1,1,soon,True", "bad_time"),
        ("1,47319.84,0.1,1,1,1639474150066,maybe", "bad_flag"),
        ("1,4.7e4,0.1,1,1,1639474150066,True", "bad_decimal"),
        ("١,47319.84,0.1,1,1,1639474150066,True", "bad_id"),
        ("1,47319.84,0.1,1,1,١٦٣٩٤٧٤١٥٠٠٦٦,True", "bad_time"),
        ("1," + "9" * 5000 + ",0.1,1,1,1639474150066,True", "out_of_range"),
        ("99999999999999999999,47319.84,0.1,1,1,1639474150066,True", "bad_id"),
    ],
)
def test_csv_rejections(row: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_csv_row(row.split(","), "BTCUSDT")
    assert info.value.reason == reason
