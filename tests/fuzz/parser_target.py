"""Coverage-guided fuzz target for the parser (atheris, libFuzzer's engine).

Run by ``make fuzz`` (``FUZZ_SECONDS``, corpus in ``fuzz/corpus``, crashing inputs in ``fuzz/``)
and for 20 s by ``tests/fuzz/test_parser_target.py`` inside ``make test``. Any libFuzzer flag
is passed through: ``python tests/fuzz/parser_target.py -max_total_time=60 CORPUS_DIR``.

Properties checked for every input the engine makes (the same as ``tests/core/test_fuzz.py``):

1. ``parse_event`` on the bytes gives a ``ParseError`` or exactly the ``Trade`` of the
   independent oracle (``tests/core/fuzzing.reference``, Python's ``json`` and ``Decimal``); no
   other exception, ever.
2. The same bytes as a line of an NDJSON body (after a valid first line) give, through the
   ``Trade`` path and the bulk path, the oracle's outcome for that line.
3. The same bytes split as a data-dump CSV row give a ``ParseError`` or a ``Trade``.
An assertion or any other exception is a finding: libFuzzer saves the input and exits non-zero.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: `tests.core.fuzzing` lives in the repository
    sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["tradepipe"]):
    from tradepipe.core import ParseError, Rejected, Trade, aggregate, iter_trades, parse_event
    from tradepipe.core.aggregate import Aggregator
    from tradepipe.core.parse import parse_csv_row
    from tradepipe.core.sources import aggregate_lines

from tests.core.fuzzing import encode, reference, valid_event  # noqa: E402 - after sys.path

_FIRST = encode(valid_event(a=7))  # a valid first line: the body is NDJSON


def _outcome(data: bytes) -> Trade | None:
    try:
        trade = parse_event(data)
    except ParseError as exc:
        assert exc.reason and exc.message, exc
        return None
    assert isinstance(trade, Trade), type(trade)
    return trade


def check(data: bytes) -> None:
    expected = reference(data)
    got = _outcome(data)
    assert got == expected, f"parse_event {got!r} != reference {expected!r} for {data[:200]!r}"
    if b"\n" in data or b"\r" in data or not data.strip():
        return
    body = _FIRST + b"\n" + data + b"\n"
    items = list(iter_trades(body, "fuzz"))
    assert len(items) == 2, items
    line = items[1]
    assert (None if isinstance(line, Rejected) else line) == expected, (line, expected)
    agg = Aggregator()
    rejects = list(aggregate_lines(io.BytesIO(body), "fuzz", agg))
    assert len(rejects) == (expected is None), rejects
    # the parser's own Trades (equal to the oracle's, above; the oracle's keep the input's
    # exponent, which the aggregator does not promise to take)
    assert agg.result() == aggregate(t for t in items if isinstance(t, Trade))
    try:
        fields = data.decode("utf-8").split(",")
    except UnicodeDecodeError:
        return
    try:
        assert isinstance(parse_csv_row(fields, "BTCUSDT"), Trade)
    except ParseError:
        pass


def main(argv: list[str]) -> None:
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
