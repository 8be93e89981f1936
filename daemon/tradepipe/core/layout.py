"""The object layout shared by Vector, the built-in sink, local mode and the Lambda.

``<prefix>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/hour=<HH>/minute=<MM>/<name>.ndjson.gz``

- the date/hour/minute are the **trade** minute (UTC) of the trades inside, never the write time;
- content: gzip-compressed NDJSON, one raw aggTrade event JSON object per line;
- ``<name>`` is unique per object. The built-in sink uses ``<topic>+<partition>+<first offset,
  20 digits>`` so that a re-delivery after a crash overwrites the same key; Vector uses
  ``<unix time>-<uuid>``. Readers must not rely on the name, and must de-duplicate by trade.
- rejected input lines are copied under ``rejected/`` at the bucket root, outside the prefix.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

OBJECT_SUFFIX = ".ndjson.gz"
REJECTED_PREFIX = "rejected/"
_KEY_RE = re.compile(
    r"(?:(?P<prefix>.*)/)?symbol=(?P<symbol>[A-Z0-9]{1,32})/date=(?P<date>\d{4}-\d{2}-\d{2})"
    r"/hour=(?P<hour>\d{2})/minute=(?P<minute>\d{2})/(?P<name>[^/]+)"
)


@dataclass(frozen=True, slots=True)
class ObjectKey:
    prefix: str
    symbol: str
    minute_ms: int
    name: str

    def __str__(self) -> str:
        when = dt.datetime.fromtimestamp(self.minute_ms / 1000, tz=dt.UTC)
        head = f"{self.prefix.strip('/')}/" if self.prefix.strip("/") else ""
        return (
            f"{head}symbol={self.symbol}/date={when:%Y-%m-%d}/hour={when:%H}/minute={when:%M}/"
            f"{self.name}"
        )


def sink_object_name(topic: str, partition: int, first_offset: int) -> str:
    """Deterministic name of a built-in sink object (Kafka Connect's scheme)."""
    return f"{topic}+{partition}+{first_offset:020d}{OBJECT_SUFFIX}"


def parse_key(key: str) -> ObjectKey:
    """A decoded object key -> its parts; ``ValueError`` if it does not follow the layout."""
    match = _KEY_RE.fullmatch(key)
    if match is None:
        raise ValueError(f"object key {key!r} does not follow the trades layout")
    try:
        when = dt.datetime.strptime(
            f"{match['date']} {match['hour']}:{match['minute']}", "%Y-%m-%d %H:%M"
        ).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"object key {key!r} has an impossible date/hour/minute") from None
    return ObjectKey(
        prefix=match["prefix"] or "",
        symbol=match["symbol"],
        minute_ms=int(when.timestamp()) * 1000,
        name=match["name"],
    )
