"""The object layout shared by Vector, the built-in sink, local mode and the Lambda.

Two layouts (``sink.layout``), both under the one prefix (the Lambda's S3 notification filter
is prefix ``trades/``, suffix ``.ndjson.gz``)::

    per_minute  <prefix>/date=<YYYY-MM-DD>/hour=<HH>/minute=<MM>/<name>.ndjson.gz
    per_symbol  <prefix>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/hour=<HH>/minute=<MM>/<name>.ndjson.gz

Rules:

1. **Trade minute.** The date/hour/minute are the **trade** minute (UTC) of every trade inside,
   never the write time.
2. **Group.** An object holds the trades of one *group* and one minute: the trade's symbol
   (``per_symbol``), or every symbol (``per_minute``, group :data:`EVERY_SYMBOL`): so the
   number of objects a minute (S3 puts, Lambda invocations) grows with the symbol count in
   one layout and with the Kafka partition count in the other. :func:`group_of` is the one
   rule; the batcher groups by it, :func:`object_key` turns a group back into a key.
3. **Content:** gzip-compressed NDJSON, one raw aggTrade event JSON object per line. Every
   line carries its own symbol (``s``), so a reader needs nothing from the key.
4. **Names.** ``<name>`` is unique per object. The built-in sink uses ``<topic>+<partition>+<first
   offset, 20 digits>+<last offset, 20 digits>`` (Kafka Connect's scheme, and the last offset):
   the same records after a crash give the same key, in either layout, and one key never holds
   two different sets of records (two sinks that both cut a partition's records after a
   rebalance write two keys, never one key twice with different contents). Vector uses
   ``<unix time>-<uuid>``. Readers must not rely on the name, and must de-duplicate by trade
   (symbol, aggregate id).
5. **Parsing.** :func:`parse_key` accepts both layouts; ``symbol`` is ``None`` for a
   per-minute key. Rejected input lines are copied under ``rejected/`` at the bucket root,
   outside the prefix.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

OBJECT_SUFFIX = ".ndjson.gz"
REJECTED_PREFIX = "rejected/"
EVERY_SYMBOL = "*"  # the group of a per-minute object (never a symbol: those are [A-Z0-9]+)
_KEY_RE = re.compile(
    r"(?:(?P<prefix>.*?)/)??(?:symbol=(?P<symbol>[A-Z0-9]{1,32})/)?"
    r"date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/minute=(?P<minute>\d{2})"
    r"/(?P<name>[^/]+)"
)


class Layout(StrEnum):
    """``sink.layout``: how trades are grouped into objects (module rule 2)."""

    PER_MINUTE = "per_minute"
    PER_SYMBOL = "per_symbol"


def group_of(layout: Layout, symbol: str) -> str:
    """The group a trade of ``symbol`` belongs to in ``layout`` (module rule 2)."""
    return symbol if layout is Layout.PER_SYMBOL else EVERY_SYMBOL


@dataclass(frozen=True, slots=True)
class ObjectKey:
    prefix: str
    symbol: str | None  # None: a per-minute object, every symbol of its minute
    minute_ms: int
    name: str

    @property
    def layout(self) -> Layout:
        return Layout.PER_MINUTE if self.symbol is None else Layout.PER_SYMBOL

    def admits(self, symbol: str, minute_ms: int) -> bool:
        """Whether a trade of ``symbol`` in minute ``minute_ms`` belongs in this object: its
        minute, and its symbol unless the object is per-minute (every symbol)."""
        return minute_ms == self.minute_ms and self.symbol in (None, symbol)

    def __str__(self) -> str:
        when = dt.datetime.fromtimestamp(self.minute_ms / 1000, tz=dt.UTC)
        head = f"{self.prefix.strip('/')}/" if self.prefix.strip("/") else ""
        symbol = "" if self.symbol is None else f"symbol={self.symbol}/"
        return f"{head}{symbol}date={when:%Y-%m-%d}/hour={when:%H}/minute={when:%M}/{self.name}"


def object_key(prefix: str, group: str, minute_ms: int, name: str) -> ObjectKey:
    """The key of an object of ``group`` (a symbol, or :data:`EVERY_SYMBOL`) and minute."""
    return ObjectKey(prefix, None if group == EVERY_SYMBOL else group, minute_ms, name)


def sink_object_name(topic: str, partition: int, first_offset: int, last_offset: int) -> str:
    """Deterministic name of a built-in sink object: Kafka Connect's scheme (topic, partition,
    first offset) and the last offset, so two objects with one name hold the same records."""
    return f"{topic}+{partition}+{first_offset:020d}+{last_offset:020d}{OBJECT_SUFFIX}"


def parse_key(key: str) -> ObjectKey:
    """A decoded object key of either layout -> its parts; ``ValueError`` if it follows
    neither."""
    match = _KEY_RE.fullmatch(key)
    prefix = (match["prefix"] or "") if match is not None else ""
    if match is None or prefix.rsplit("/", 1)[-1].startswith("symbol="):  # a bad symbol=
        raise ValueError(f"object key {key!r} does not follow the trades layout")
    try:
        when = dt.datetime.strptime(
            f"{match['date']} {match['hour']}:{match['minute']}", "%Y-%m-%d %H:%M"
        ).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"object key {key!r} has an impossible date/hour/minute") from None
    return ObjectKey(
        prefix=prefix,
        symbol=match["symbol"],
        minute_ms=int(when.timestamp()) * 1000,
        name=match["name"],
    )
