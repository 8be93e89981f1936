"""Fuzzing every entry point: a valid event with one field replaced by anything gives a
ParseError or exactly the Trade the documented rules (``tests/core/fuzzing.reference``, on
Python's ``json`` and ``Decimal`` of an ASCII string) give -- never anything else."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.fuzzing import (
    BASE_T,
    bad_lines,
    encode,
    mutated,
    reference,
    reference_object,
    valid_event,
)

from tradepipe.core import (
    ParseError,
    Rejected,
    Trade,
    aggregate,
    iter_trades,
    parse_csv_row,
    parse_event,
    trade_from_object,
)
from tradepipe.core.aggregate import Aggregator
from tradepipe.core.decimals import read_units
from tradepipe.core.parse import from_mapping, validate
from tradepipe.core.sources import aggregate_lines
from tradepipe.producer.intake import Intake
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.quarantine import Quarantine

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def outcome(call: object, *args: object, **kwargs: object) -> Trade | None:
    """The call's Trade, or None for a ParseError; any other exception fails the test."""
    try:
        result = call(*args, **kwargs)  # type: ignore[operator]
    except ParseError as exc:
        assert exc.reason and exc.message
        return None
    assert isinstance(result, Trade)
    return result


@given(mutated())
@FUZZ
def test_parse_event_equals_the_reference(raw: bytes) -> None:
    expected = reference(raw)
    assert outcome(parse_event, raw) == expected
    assert outcome(parse_event, bytearray(raw)) == expected
    assert outcome(parse_event, memoryview(raw)) == expected
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "surrogateescape")  # a str holding lone surrogates
        assert outcome(parse_event, text) is None
    else:
        assert outcome(parse_event, text) == expected


@given(mutated(), st.integers(BASE_T - 4 * 3_600_000, BASE_T + 3_600_000))
@FUZZ
def test_the_clock_window_equals_the_reference(raw: bytes, now_ms: int) -> None:
    assert outcome(parse_event, raw, now_ms=now_ms) == reference(raw, now_ms=now_ms)


@given(mutated())
@FUZZ
def test_decoded_objects_and_rest_elements_equal_the_reference(raw: bytes) -> None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return
    if not isinstance(obj, dict):
        assert outcome(parse_event, raw) is None
        return
    assert outcome(parse_event, obj) == reference_object(obj)
    if obj.get("s") == "BTCUSDT":  # the REST form: no "s", the caller names the symbol
        del obj["s"]
        assert outcome(trade_from_object, obj, "BTCUSDT") == reference_object(obj, "BTCUSDT")


@given(st.lists(mutated(), min_size=1, max_size=8), st.booleans())
@settings(FUZZ, max_examples=150)
def test_bodies_bulk_path_and_trade_path_agree_with_the_reference(
    lines: list[bytes], crlf: bool
) -> None:
    lines = [line for line in lines if b"\n" not in line and b"\r" not in line]
    body = [encode(valid_event(a=7)), *lines]  # a valid first line: NDJSON
    data = (b"\r\n" if crlf else b"\n").join(body) + b"\n"
    expected = [reference(line) for line in body]
    got = list(iter_trades(data, "fuzz"))
    # blank lines are skipped, not rejected: a line of whitespace has no outcome
    kept = [(line, e) for line, e in zip(body, expected, strict=True) if line.strip()]
    assert [None if isinstance(g, Rejected) else g for g in got] == [e for _, e in kept]
    agg = Aggregator()
    rejects = list(aggregate_lines(io.BytesIO(data), "fuzz", agg))
    assert [r.lineno for r in rejects] == [r.lineno for r in got if isinstance(r, Rejected)]
    assert agg.result() == aggregate(t for t in expected if t is not None)


def malformed_total(intake: Intake) -> float:
    return sum(
        sample.value
        for metric in intake.metrics.registry.collect()
        if metric.name == "tradepipe_malformed_messages"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


@given(raw=mutated())
@settings(FUZZ, max_examples=200)
def test_the_producer_intake_counts_what_the_reference_refuses(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    quarantine = tmp_path_factory.mktemp("q") / "q.ndjson"
    box = Outbox(100)
    intake = Intake(["btcusdt", "ethusdt"], box, ProducerMetrics(), Quarantine(quarantine))
    intake.live(raw)  # never raises
    now = time.time() * 1000
    expected = reference(raw, now_ms=int(now))
    if expected is not None and expected.symbol not in ("BTCUSDT", "ETHUSDT"):
        expected = None  # not subscribed: refused (bad_symbol)
    if b"serverShutdown" in raw or b'"id"' in raw:
        return  # possibly a control message, which is neither a trade nor refused
    assert len(box) == (0 if expected is None else 1)
    assert malformed_total(intake) == (1 if expected is None else 0)
    lines = quarantine.read_bytes().splitlines() if quarantine.exists() else []
    assert len(lines) == (1 if expected is None else 0)


CSV_ROW = ["3300000000", "97123.45000000", "0.01200000", "4200000000", "4200000002",
           str((BASE_T + 3) * 1000), "True", "True"]  # fmt: skip
CSV_KEYS = ("a", "p", "q", "f", "l", "T", "m")


def csv_reference(cells: list[str]) -> Trade | None:
    """The CSV rule of docs/layout.md: 7 or 8 columns; ids and time are ASCII digits, the flag
    true/false/1/0 in any case, amounts as text; then the event rules."""
    if len(cells) not in (7, 8):
        return None
    ev: dict[str, object] = {}
    for name, cell in zip(CSV_KEYS, cells, strict=False):
        text = cell.strip()
        if name in "aflT":
            digits = text.isascii() and text.isdigit() and len(text) <= 19
            ev[name] = int(text) if digits else text
        elif name == "m":
            ev[name] = {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), text)
        else:
            ev[name] = text
    return reference_object(ev, "BTCUSDT")


@given(
    st.integers(0, 7),
    st.one_of(
        st.text(max_size=25),
        st.sampled_from(["1", "١", "0", "true", "FALSE", "", " 7 ", "1.²", "9" * 20, "1e3"]),
    ),
    st.integers(6, 9),
)
@FUZZ
def test_csv_rows_equal_the_reference(column: int, text: str, width: int) -> None:
    cells = [*CSV_ROW, "x", "y"][:width]
    if column < len(cells):
        cells[column] = text.replace(",", "")
    assert outcome(parse_csv_row, cells, "BTCUSDT") == csv_reference(cells)


@given(st.text(max_size=40) | st.sampled_from(["1.²", "1.١", "٣", "0.1" + "0" * 50]))
@FUZZ
def test_the_decimal_reader_is_exact_or_refuses(text: str) -> None:
    try:
        units = read_units("p", text)
    except ParseError:
        assert reference_amount(text) is None
    else:
        assert units == reference_amount(text)


def reference_amount(text: str) -> int | None:
    ev = valid_event(p=text)
    trade = reference(encode(ev)) if text.isascii() else None
    return None if trade is None else int(trade.price.scaleb(8))


def test_seeded_bad_lines_are_all_refused() -> None:
    lines = bad_lines(seed=11, count=2000)
    assert len(set(lines)) > 1500
    for line in lines:
        assert outcome(parse_event, line) is None


def test_validate_takes_a_wire(tmp_path: Path) -> None:
    wire = from_mapping(valid_event())
    assert validate(wire) == parse_event(encode(valid_event()))
