"""Parsing and validation: every accepted form, every rejection reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from tests.core.helpers import BASE_T, event, line

from tradepipe.core import REASONS, ParseError, Side, Trade, parse_csv_row, parse_event
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
    wrapped = orjson.dumps({"stream": "btcusdt@aggTrade", "data": event()})
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
    assert parse_event(orjson.dumps(extra)) == parse_event(line())


REJECTIONS: list[tuple[str, bytes | str | dict[str, Any]]] = [
    ("invalid_json", b'{"e":"aggTrade",'),
    ("invalid_json", b"\xff\xfe"),
    ("not_an_object", b"[1, 2]"),
    ("not_an_object", orjson.dumps({"stream": "btcusdt@aggTrade", "data": [1]})),
    ("wrong_event", line(e="trade")),
    ("missing_field", line(drop=["p"])),
    ("missing_field", line(drop=["s"])),
    ("bad_symbol", line(s="btc usdt")),
    ("bad_symbol", line(s="btcusdt")),
    ("bad_symbol", line(s=42)),
    ("bad_symbol", orjson.dumps({"stream": "ethusdt@aggTrade", "data": event()})),
    ("bad_id", line(a=-1)),
    ("bad_id", line(f="7")),
    ("bad_id", line(l=1.5)),
    ("bad_id", line(a=True)),
    ("id_order", line(f=10, l=9)),
    ("bad_decimal", line(p=97123.45)),
    ("bad_decimal", line(q="1e-5")),
    ("bad_decimal", line(p=" 1")),
    ("bad_decimal", line(p="1_000")),
    ("bad_decimal", line(p="NaN")),
    ("bad_decimal", line(p="-1.5")),
    ("bad_decimal", line(p="1.")),
    ("bad_decimal", line(p="١٢")),  # non-ASCII digits
    ("not_positive", line(q="0.00000000")),
    ("too_precise", line(q="0.000000001")),
    ("out_of_range", line(p="123456789012345678901.5")),
    ("bad_time", line(T=12345)),
    ("bad_time", line(T="1732406400003")),
    ("bad_time", line(E=-5)),
    ("bad_flag", line(m="true")),
    ("bad_flag", line(m=1)),
]


@pytest.mark.parametrize(("reason", "message"), REJECTIONS)
def test_every_rejection_reason(reason: str, message: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_event(message)
    assert info.value.reason == reason
    assert info.value.message  # a human explanation naming the problem


def test_all_reasons_are_exercised() -> None:
    covered = {reason for reason, _ in REJECTIONS} | {"bad_csv"}
    assert covered == REASONS


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
    assert parse_event(orjson.dumps(ev)) == t


def test_direct_construction_validates() -> None:
    with pytest.raises(ParseError, match="not_positive"):
        Trade("BTCUSDT", 1, Decimal("-1"), Decimal(1), 1, 1, BASE_T, True)
    with pytest.raises(ParseError, match="bad_decimal"):
        Trade("BTCUSDT", 1, 1.5, Decimal(1), 1, 1, BASE_T, True)  # type: ignore[arg-type]


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
    ],
)
def test_csv_rejections(row: str, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_csv_row(row.split(","), "BTCUSDT")
    assert info.value.reason == reason
