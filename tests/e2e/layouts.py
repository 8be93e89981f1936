"""What the end-to-end tests of per-minute objects share: the settings of a 4-partition topic
and per-minute objects, and the check that S3 holds every trade once."""

from __future__ import annotations

from collections import Counter

from tradepipe.core import Layout, minute_of, parse_key

from .pipeline import Pipeline, tally_ids

PARTITIONS = {"TRADEPIPE_KAFKA_PARTITIONS": "4"}
PER_MINUTE = {"TRADEPIPE_SINK_LAYOUT": "per_minute"}


def assert_once_each(
    objects: dict[str, list[tuple[str, int, int]]], p: Pipeline, *, repeats: bool = False
) -> None:
    """S3 holds every published trade, each in exactly one line of one object (``repeats``:
    at least one), each in an object of its trade minute (per-minute keys: no symbol in
    them)."""
    lines = [(s, a) for trades in objects.values() for s, a, _ in trades]
    twice = [t for t, n in Counter(lines).items() if n > 1]
    if not repeats:
        assert not twice, f"{len(twice)} trades are in S3 more than once, e.g. {twice[:5]}"
    assert set(lines) == tally_ids(p.record)
    for key, trades in objects.items():
        parsed = parse_key(key)
        assert parsed.layout is Layout.PER_MINUTE, key
        assert all(parsed.admits(s, minute_of(t)) for s, _, t in trades), key
