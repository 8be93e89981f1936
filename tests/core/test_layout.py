"""The object layout (core/layout.py): both key shapes, written and parsed back, and the rule
that decides which object a trade belongs in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradepipe.core import (
    EVERY_SYMBOL,
    MINUTE_MS,
    Layout,
    ObjectKey,
    group_of,
    object_key,
    parse_key,
    sink_object_name,
)

MINUTE = 1_617_566_580_000  # 2021-04-04 20:03 UTC
NAME = sink_object_name("aggtrades", 3, 1234, 5678)


@pytest.mark.parametrize(
    ("key", "prefix", "symbol"),
    [
        ("trades/date=2021-04-04/hour=20/minute=03/" + NAME, "trades", None),
        ("trades/symbol=BTCUSDT/date=2021-04-04/hour=20/minute=03/" + NAME, "trades", "BTCUSDT"),
        ("a/b/date=2021-04-04/hour=20/minute=03/" + NAME, "a/b", None),
        ("a/b/symbol=ETHUSDT/date=2021-04-04/hour=20/minute=03/" + NAME, "a/b", "ETHUSDT"),
        ("date=2021-04-04/hour=20/minute=03/" + NAME, "", None),
        ("symbol=DOTUSDT/date=2021-04-04/hour=20/minute=03/x.ndjson.gz", "", "DOTUSDT"),
    ],
)
def test_both_layouts_parse_and_print_back(key: str, prefix: str, symbol: str | None) -> None:
    parsed = parse_key(key)
    assert (parsed.prefix, parsed.symbol, parsed.minute_ms) == (prefix, symbol, MINUTE)
    assert parsed.layout is (Layout.PER_SYMBOL if symbol else Layout.PER_MINUTE)
    assert str(parsed) == key


@pytest.mark.parametrize(
    "key",
    [
        "trades/symbol=btcusdt/date=2021-04-04/hour=20/minute=03/x",  # lower case
        "trades/symbol=/date=2021-04-04/hour=20/minute=03/x",
        "trades/date=2021-04-04/hour=20/x",
        "trades/date=2021-04-04/hour=24/minute=03/x",  # impossible hour
        "trades/date=2021-04-04/hour=20/minute=03/",
        "trades/date=2021-04-04/hour=20/minute=03/a/b",
    ],
)
def test_keys_of_neither_layout_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        parse_key(key)


def test_the_group_rule() -> None:
    assert group_of(Layout.PER_SYMBOL, "BTCUSDT") == "BTCUSDT"
    assert group_of(Layout.PER_MINUTE, "BTCUSDT") == EVERY_SYMBOL
    assert object_key("trades", EVERY_SYMBOL, MINUTE, NAME) == ObjectKey(
        "trades", None, MINUTE, NAME
    )
    assert str(object_key("trades", "BTCUSDT", MINUTE, NAME)).startswith("trades/symbol=BTCUSDT/")


def test_admits() -> None:
    every = ObjectKey("trades", None, MINUTE, NAME)
    one = ObjectKey("trades", "BTCUSDT", MINUTE, NAME)
    assert every.admits("BTCUSDT", MINUTE) and every.admits("ETHUSDT", MINUTE)
    assert one.admits("BTCUSDT", MINUTE) and not one.admits("ETHUSDT", MINUTE)
    assert not every.admits("BTCUSDT", MINUTE + MINUTE_MS)
    assert not one.admits("BTCUSDT", MINUTE - MINUTE_MS)


@given(
    st.sampled_from(list(Layout)),
    st.from_regex(r"[A-Z0-9]{1,20}", fullmatch=True),
    st.integers(0, 4_102_444_799_999 // MINUTE_MS),  # minutes to the end of 2099
    st.sampled_from(["", "trades", "x/y", "raw/2026"]),
    st.integers(0, 2**40),
)
def test_every_key_written_parses_back(
    layout: Layout, symbol: str, minute: int, prefix: str, offset: int
) -> None:
    key = object_key(prefix, group_of(layout, symbol), minute * MINUTE_MS, NAME)
    parsed = parse_key(str(key))
    assert parsed == key
    assert parsed.layout is layout
    assert parsed.admits(symbol, minute * MINUTE_MS)
