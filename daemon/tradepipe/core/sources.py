"""Read trades out of files and object bodies: NDJSON (raw events or combined-stream
wrappers) and Binance's data-dump CSV, either of them optionally gzip-compressed.

Bad lines never stop a read: each becomes a :class:`Rejected` carrying the line verbatim, so
callers can report, count and quarantine it while the good lines still count.
"""

from __future__ import annotations

import gzip
import io
import itertools
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tradepipe.core.aggregate import Aggregator
from tradepipe.core.errors import ParseError, Reason
from tradepipe.core.parse import (
    MAX_LINE_BYTES,
    Fields,
    check,
    csv_wire,
    decode_bytes,
    is_csv_header,
    to_trade,
)
from tradepipe.core.trade import Trade

GZIP_MAGIC = b"\x1f\x8b"
_T = TypeVar("_T")
_DUMP_NAME_RE = re.compile(r"(?:^|[^A-Z0-9])([A-Z0-9]{1,20})-aggTrades-")
BOM = b"\xef\xbb\xbf"
_CSV_ROW = re.compile(rb"[0-9]+\s*,")


@dataclass(frozen=True, slots=True)
class Rejected:
    source: str
    lineno: int
    raw: bytes
    error: ParseError


class SourceError(Exception):
    """A whole input cannot be read (missing, unreadable, truncated gzip, unknown symbol)."""


def decompress(data: bytes, source: str) -> bytes:
    """Gunzip ``data`` if it is gzip; a truncated or corrupt gzip raises :class:`SourceError`."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise SourceError(f"{source}: corrupt or truncated gzip: {exc}") from None


def symbol_from_name(name: str) -> str | None:
    """``BTCUSDT-aggTrades-2021-12-14.csv`` -> ``BTCUSDT`` (data-dump naming)."""
    match = _DUMP_NAME_RE.search(Path(name).name)
    return match.group(1) if match else None


def is_csv_line(line: bytes) -> bool:
    """Whether a (first non-empty) line is a data-dump CSV header or row: ``agg_trade_id,...``
    or digits followed by a comma. Anything else -- ``{``, a foreign line, garbage -- means
    NDJSON, whose bad lines are rejected one by one."""
    head = line.removeprefix(BOM).lstrip()
    return head[:12].lower() == b"agg_trade_id" or _CSV_ROW.match(head) is not None


def _content(lineno: int, line: bytes) -> bytes:
    """A line as the readers see it: line end and (on line 1) a BOM removed; empty if blank."""
    if lineno == 1:
        line = line.removeprefix(BOM)
    line = line.rstrip(b"\r\n")
    return line if line.strip() else b""


def _numbered(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers, line ends and a leading BOM removed."""
    for lineno, line in enumerate(lines, 1):
        line = _content(lineno, line)
        if line:
            yield lineno, line


def iter_fields(
    data: bytes | Iterable[bytes],
    source: str,
    symbol: str | None = None,
    now_ms: int | None = None,
) -> Iterator[Fields | Rejected]:
    """Every line of a (decompressed) body -> its validated :data:`Fields` or a
    :class:`Rejected` (the raw line, capped at ``MAX_LINE_BYTES``).

    ``data`` is the whole body or an iterable of its lines (e.g. an open file, streamed). The
    body is CSV when its first non-empty line is (:func:`is_csv_line`), else NDJSON. For CSV
    the symbol comes from ``symbol`` or the data-dump file name; NDJSON events carry their
    own ``s``. ``now_ms`` bounds trade times (parse rule 12).
    """
    lines = _numbered(io.BytesIO(data) if isinstance(data, bytes) else data)
    first = next(lines, None)
    if first is None:
        return
    lines = itertools.chain((first,), lines)
    if is_csv_line(first[1]):
        yield from _csv_fields(lines, source, symbol, now_ms)
        return
    for lineno, line in lines:
        try:
            yield check(decode_bytes(line), None, now_ms)
        except ParseError as exc:
            yield Rejected(source, lineno, line[:MAX_LINE_BYTES], exc)


def iter_trades(
    data: bytes | Iterable[bytes],
    source: str,
    symbol: str | None = None,
    now_ms: int | None = None,
) -> Iterator[Trade | Rejected]:
    """:func:`iter_fields`, good lines as :class:`Trade` values."""
    for item in iter_fields(data, source, symbol, now_ms):
        yield item if isinstance(item, Rejected) else to_trade(item)


def _csv_fields(
    lines: Iterable[tuple[int, bytes]], source: str, symbol: str | None, now_ms: int | None
) -> Iterator[Fields | Rejected]:
    sym = symbol or symbol_from_name(source)
    if sym is None:
        raise SourceError(
            f"{source}: a data-dump CSV carries no symbol: name the file "
            "SYMBOL-aggTrades-YYYY-MM-DD.csv or pass --symbol"
        )
    first = True
    for lineno, line in lines:
        try:
            if len(line) > MAX_LINE_BYTES:
                raise ParseError(Reason.TOO_LARGE, f"{len(line)} bytes, over {MAX_LINE_BYTES}")
            try:
                cells = line.decode("utf-8").split(",")
            except UnicodeDecodeError as exc:
                raise ParseError(Reason.BAD_ENCODING, f"not UTF-8: {exc}") from None
            if first and is_csv_header(cells):
                first = False
                continue
            first = False
            yield check(csv_wire(cells), sym, now_ms)
        except ParseError as exc:
            yield Rejected(source, lineno, line[:MAX_LINE_BYTES], exc)


def aggregate_lines(
    lines: Iterable[bytes],
    source: str,
    agg: Aggregator,
    symbol: str | None = None,
    now_ms: int | None = None,
) -> Iterator[Rejected]:
    """:func:`iter_fields` straight into ``agg``, yielding the rejects: the bulk path of
    ``tradepipe aggregate``. The same decode and :func:`~tradepipe.core.parse.check` per
    line, with amounts kept in 1e-8 units (no Trade, no Decimal per line) and the NDJSON
    loop written out (no generator per line)."""
    add = agg.add
    numbered = iter(lines)
    head: list[bytes] = []
    for line in numbered:  # the first non-empty line decides the format
        head.append(line)
        if _content(len(head), line):
            break
    body = itertools.chain(head, numbered)
    if head and is_csv_line(head[-1]):
        for item in _csv_fields(_numbered(body), source, symbol, now_ms):
            if type(item) is tuple:
                s, a, p8, q8, f, l_, t, m = item
                add(s, t, a, p8, q8, l_ - f + 1, m)
            else:
                yield item  # type: ignore[misc]
        return
    for lineno, line in enumerate(body, 1):
        try:
            s, a, p8, q8, f, l_, t, m = check(decode_bytes(line), None, now_ms)
        except ParseError:
            line = _content(lineno, line)
            if not line:
                continue
            try:  # a BOM or the line end may be all that was wrong: as iter_fields sees it
                s, a, p8, q8, f, l_, t, m = check(decode_bytes(line), None, now_ms)
            except ParseError as exc:
                yield Rejected(source, lineno, line[:MAX_LINE_BYTES], exc)
                continue
        add(s, t, a, p8, q8, l_ - f + 1, m)


def open_body(path: str | Path, symbol: str | None = None) -> io.BufferedIOBase:
    """Open a file for streaming, gunzipping if needed; positioned at the start of the body.

    A missing file, or a data-dump CSV whose symbol cannot be told, raises
    :class:`SourceError` here rather than half-way through a run.
    """
    source = str(path)
    try:
        raw = Path(path).open("rb")
        magic = raw.read(2)
        raw.seek(0)
        fh: io.BufferedIOBase = raw
        if magic == GZIP_MAGIC:
            raw.close()
            fh = gzip.open(path, "rb")  # owns (and closes) its file, unlike GzipFile(fileobj=)
        csv = body_is_csv(fh)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(
            f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if csv and not (symbol or symbol_from_name(source)):
        fh.close()
        list(_csv_fields((), source, symbol, None))  # raises the SourceError naming the problem
    return fh


def body_is_csv(fh: io.BufferedIOBase) -> bool:
    """Whether an open body's first non-empty line (within 64 KiB) is CSV; rewinds ``fh``."""
    seen = 0
    found = False
    for lineno, line in enumerate(fh, 1):
        if _content(lineno, line):
            found = is_csv_line(line)
            break
        seen += len(line)
        if seen > MAX_LINE_BYTES:
            break
    fh.seek(0)
    return found


def streamed(fh: io.BufferedIOBase, source: str, items: Iterator[_T]) -> Iterator[_T]:
    """Pass ``items`` through, closing ``fh`` at the end and turning a corrupt or truncated
    compressed stream into :class:`SourceError`."""
    with fh:
        try:
            yield from items
        except (EOFError, OSError, zlib.error) as exc:
            raise SourceError(f"{source}: corrupt or truncated: {exc}") from None


def read_file(
    path: str | Path, symbol: str | None = None, now_ms: int | None = None
) -> Iterator[Trade | Rejected]:
    """A file on disk (NDJSON, CSV, ``.gz`` or not) -> trades and rejects, streamed line by line."""
    fh = open_body(path, symbol)
    return streamed(fh, str(path), iter_trades(fh, str(path), symbol, now_ms))


def aggregate_file(
    path: str | Path, agg: Aggregator, symbol: str | None = None, now_ms: int | None = None
) -> Iterator[Rejected]:
    """Stream a file into ``agg`` (the bulk path of ``tradepipe aggregate``); yield its rejects.

    Opening errors raise :class:`SourceError` immediately, not on first iteration.
    """
    fh = open_body(path, symbol)
    source = str(path)
    return streamed(fh, source, aggregate_lines(fh, source, agg, symbol, now_ms))
