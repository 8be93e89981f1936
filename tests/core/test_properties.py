"""Property-based tests: split, order and duplicate invariance of aggregation; parser totality."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradepipe.core import MinutePartial, ParseError, Trade, aggregate, merge_all, parse_event

BASE = 1_732_406_400_000

prices = st.integers(1, 10**12).map(lambda n: Decimal(n).scaleb(-8))


@st.composite
def trade_lists(draw: st.DrawFn) -> list[Trade]:
    n = draw(st.integers(0, 40))
    ids = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n, unique=True))
    out = []
    for a in ids:
        f = draw(st.integers(0, 10**6))
        out.append(
            Trade(
                draw(st.sampled_from(["BTCUSDT", "ETHUSDT"])),
                a,
                draw(prices),
                draw(prices),
                f,
                f + draw(st.integers(0, 5)),
                BASE + draw(st.integers(0, 4 * 60_000)),
                draw(st.booleans()),
            )
        )
    return out


def merged(batches: list[list[Trade]]) -> dict[tuple[str, int], MinutePartial]:
    out: dict[tuple[str, int], MinutePartial] = {}
    for batch in batches:
        merge_all(out, aggregate(batch))
    return out


@given(trade_lists(), st.data())
@settings(max_examples=200, deadline=None)
def test_split_invariance(trades: list[Trade], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(trades)), max_size=5)))
    bounds = [0, *cuts, len(trades)]
    batches = [trades[a:b] for a, b in itertools.pairwise(bounds)]
    assert merged(batches) == aggregate(trades)


@given(trade_lists(), st.randoms())
@settings(max_examples=200, deadline=None)
def test_order_invariance(trades: list[Trade], rnd: object) -> None:
    shuffled = list(trades)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert aggregate(shuffled) == aggregate(trades)


@given(trade_lists(), st.data())
@settings(max_examples=200, deadline=None)
def test_duplicate_invariance(trades: list[Trade], data: st.DataObject) -> None:
    dupes = data.draw(st.lists(st.sampled_from(trades), max_size=20)) if trades else []
    assert aggregate(trades + dupes + trades[:3]) == aggregate(trades)


@given(trade_lists(), st.data())
@settings(max_examples=100, deadline=None)
def test_redelivery_with_exclude_is_idempotent(trades: list[Trade], data: st.DataObject) -> None:
    """What the database does: store, then re-deliver any overlapping batch excluding stored ids."""
    stored: dict[tuple[str, int], MinutePartial] = {}
    for _ in range(3):
        batch = data.draw(st.lists(st.sampled_from(trades), max_size=30)) if trades else []
        merge_all(
            stored, aggregate(batch, exclude=lambda k: stored[k].ids if k in stored else _empty())
        )
    merge_all(
        stored, aggregate(trades, exclude=lambda k: stored[k].ids if k in stored else _empty())
    )
    assert stored == aggregate(trades)


def _empty():  # type: ignore[no-untyped-def]
    from tradepipe.core import IdRanges

    return IdRanges()


@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(list("eEsapqflTmM")),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
        ),
    )
)
@settings(max_examples=500, deadline=None)
def test_parser_is_total(message: object) -> None:
    """Any input gives a Trade or a ParseError: never another exception."""
    try:
        assert isinstance(parse_event(message), Trade)  # type: ignore[arg-type]
    except ParseError:
        pass
