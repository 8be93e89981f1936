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

from tradepipe.core.errors import ParseError
from tradepipe.core.parse import is_csv_header, parse_csv_row, parse_event
from tradepipe.core.trade import Trade

GZIP_MAGIC = b"\x1f\x8b"
_T = TypeVar("_T")
_DUMP_NAME_RE = re.compile(r"(?:^|[^A-Z0-9])([A-Z0-9]{2,32})-aggTrades-")


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


def is_csv(head: bytes) -> bool:
    """Whether a body starting with ``head`` is CSV (anything not starting with ``{``)."""
    first = head.lstrip()[:1]
    return bool(first) and first != b"{"


def iter_trades(
    data: bytes | Iterable[bytes], source: str, symbol: str | None = None
) -> Iterator[Trade | Rejected]:
    """Every line of a (decompressed) body -> a :class:`Trade` or a :class:`Rejected`.

    ``data`` is the whole body or an iterable of its lines (e.g. an open file, streamed).
    For CSV the symbol comes from ``symbol`` or the data-dump file name; NDJSON events carry
    their own ``s``.
    """
    lines: Iterator[bytes] = iter(io.BytesIO(data) if isinstance(data, bytes) else data)
    first = next(lines, b"")
    lines = itertools.chain((first,), lines)
    if is_csv(first):
        yield from _iter_csv(lines, source, symbol)
        return
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            yield parse_event(line)
        except ParseError as exc:
            yield Rejected(source, lineno, line, exc)


def _iter_csv(
    lines: Iterable[bytes], source: str, symbol: str | None
) -> Iterator[Trade | Rejected]:
    sym = symbol or symbol_from_name(source)
    if sym is None:
        raise SourceError(
            f"{source}: a data-dump CSV carries no symbol: name the file "
            "SYMBOL-aggTrades-YYYY-MM-DD.csv or pass --symbol"
        )
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            fields = line.decode("utf-8").split(",")
        except UnicodeDecodeError:
            yield Rejected(source, lineno, line, ParseError("bad_csv", "line is not UTF-8"))
            continue
        if lineno == 1 and is_csv_header(fields):
            continue
        try:
            yield parse_csv_row(fields, sym)
        except ParseError as exc:
            yield Rejected(source, lineno, line, exc)


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
        head = fh.read(64)
        fh.seek(0)
    except (OSError, EOFError) as exc:
        raise SourceError(
            f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if is_csv(head) and not (symbol or symbol_from_name(source)):
        fh.close()
        list(_iter_csv((), source, symbol))  # raises the SourceError naming the problem
    return fh


def streamed(fh: io.BufferedIOBase, source: str, items: Iterator[_T]) -> Iterator[_T]:
    """Pass ``items`` through, closing ``fh`` at the end and turning a corrupt or truncated
    compressed stream into :class:`SourceError`."""
    with fh:
        try:
            yield from items
        except (EOFError, OSError, zlib.error) as exc:
            raise SourceError(f"{source}: corrupt or truncated: {exc}") from None


def read_file(path: str | Path, symbol: str | None = None) -> Iterator[Trade | Rejected]:
    """A file on disk (NDJSON, CSV, ``.gz`` or not) -> trades and rejects, streamed line by line."""
    fh = open_body(path, symbol)
    return streamed(fh, str(path), iter_trades(fh, str(path), symbol))
