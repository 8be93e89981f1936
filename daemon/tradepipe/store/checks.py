"""Table ``minute_checks`` and the reads and writes ``tradepipe verify`` needs on
``trade_minutes``.

Rules:

1. **Checks are replaced, never merged.** A minute's newest verdict is its row in
   ``minute_checks`` (``status``, ``detail`` as JSON, ``checked_at`` UTC); writing the verdicts
   of a run is one transaction.
2. **A rebuilt minute replaces its row whole.** :func:`replace_minutes` (a ``mismatch`` with no id
   missing: the row was altered or loaded from bad data) locks the minutes' rows as the upsert
   does (``FOR UPDATE`` / ``BEGIN IMMEDIATE``), deletes them and inserts the partials built from
   the exchange's trades, in one transaction. Its columns are the row contract's
   (:data:`tradepipe.store.minutes.STORED_COLUMNS`, from :mod:`tradepipe.core.rows`): no column
   is named here, so a column added to the contract is rebuilt too. The ledger ``agg_ids`` is
   rebuilt with it, so trades delivered later are still counted once (upsert rule 3).
3. **Everything else that writes rows goes through the upsert** (``Store.upsert``): missing ids
   fetched for a ``hole`` or a ``missing`` minute are merged exactly like the Lambda's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence

from tradepipe.core import MinutePartial, minute_text
from tradepipe.core.checks import MinuteCheck
from tradepipe.core.rows import minute_ms_of_text, timestamp_text
from tradepipe.store.connection import Connection
from tradepipe.store.minutes import (
    STORED_COLUMNS,
    TABLE,
    columns_sql,
    fetch_partials,
    partial_of,
    values_of,
)

CHECKS_TABLE = "minute_checks"
CHECK_COLUMNS = ("symbol", "timestamp", "status", "detail", "checked_at")


def stored_symbols(conn: Connection) -> list[str]:
    return [str(r[0]) for r in conn.query(f"SELECT DISTINCT symbol FROM {TABLE} ORDER BY symbol")]


def stored_span(conn: Connection, symbol: str) -> tuple[int, int] | None:
    """The oldest and newest stored minute (epoch ms) of ``symbol``, or None without rows."""
    ts = conn.quote("timestamp")
    rows = conn.query(
        f"SELECT MIN({ts}), MAX({ts}) FROM {TABLE} WHERE symbol = {conn.ph}", (symbol,)
    )
    if not rows or rows[0][0] is None:
        return None
    return minute_ms_of_text(timestamp_text(rows[0][0])), minute_ms_of_text(
        timestamp_text(rows[0][1])
    )


def fetch_range(
    conn: Connection, symbol: str, first_ms: int, last_ms: int
) -> dict[int, MinutePartial]:
    """The stored partials of ``symbol`` from minute ``first_ms`` to ``last_ms`` (inclusive),
    by minute."""
    ts, ph = conn.quote("timestamp"), conn.ph
    rows = conn.query(
        f"SELECT {columns_sql(conn)} FROM {TABLE} WHERE symbol = {ph} AND {ts} >= {ph} "
        f"AND {ts} <= {ph} ORDER BY {ts}",
        (symbol, minute_text(first_ms), minute_text(last_ms)),
    )
    out: dict[int, MinutePartial] = {}
    for stored in rows:
        p = partial_of(stored)
        out[p.minute_ms] = p
    return out


def write_checks(conn: Connection, checks: Sequence[MinuteCheck], checked_at: dt.datetime) -> None:
    """Rule 1: the verdicts, replacing earlier ones, in one transaction."""
    if not checks:
        return
    at = checked_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    cols = columns_sql(conn, CHECK_COLUMNS)
    marks = ", ".join([conn.ph] * len(CHECK_COLUMNS))
    changed = [conn.quote(c) for c in CHECK_COLUMNS[2:]]
    if conn.dialect == "mysql":
        sets = ", ".join(f"{c} = VALUES({c})" for c in changed)
        sql = f"INSERT INTO {CHECKS_TABLE} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}"
    else:
        sets = ", ".join(f"{c} = excluded.{c}" for c in changed)
        sql = (
            f"INSERT INTO {CHECKS_TABLE} ({cols}) VALUES ({marks}) "
            f'ON CONFLICT ("symbol", "timestamp") DO UPDATE SET {sets}'
        )
    params = [
        (c.symbol, c.minute, c.status.value, json.dumps(c.detail(), sort_keys=True), at)
        for c in checks
    ]
    with conn.transaction():
        conn.execute_many(sql, params)


def replace_minutes(
    conn: Connection, symbol: str, minutes: Sequence[int], rebuilt: Mapping[int, MinutePartial]
) -> int:
    """Rule 2: the rows of ``minutes`` become ``rebuilt`` (a minute absent from it had no trades
    on the exchange: its row goes). Returns the number of rows that changed."""
    if not minutes:
        return 0
    keys = sorted((symbol, m) for m in minutes)
    ts, ph = conn.quote("timestamp"), conn.ph
    insert = (
        f"INSERT INTO {TABLE} ({columns_sql(conn)}) "
        f"VALUES ({', '.join([ph] * len(STORED_COLUMNS))})"
    )
    changed = 0
    with conn.transaction():
        before = fetch_partials(conn, keys, lock=True)
        for key in keys:
            new = rebuilt.get(key[1])
            old = before.get(key)
            if old is not None and new is not None and values_of(old) == values_of(new):
                continue
            if old is not None:
                conn.execute_many(
                    f"DELETE FROM {TABLE} WHERE symbol = {ph} AND {ts} = {ph}",
                    [(symbol, minute_text(key[1]))],
                )
            if new is not None:
                conn.execute_many(insert, [values_of(new)])
            changed += 1
    return changed


def read_checks(
    conn: Connection, symbol: str, start: str, end: str
) -> list[tuple[str, str, str, str]]:
    """``(timestamp, status, detail, checked_at)`` of ``symbol``'s checked minutes in
    ``start..end`` (contract minute text, inclusive), in time order."""
    ts, ph = conn.quote("timestamp"), conn.ph
    rows = conn.query(
        f"SELECT {ts}, status, detail, checked_at FROM {CHECKS_TABLE} "
        f"WHERE symbol = {ph} AND {ts} >= {ph} AND {ts} <= {ph} ORDER BY {ts}",
        (symbol, start, end),
    )
    return [(timestamp_text(r[0]), str(r[1]), str(r[2]), timestamp_text(r[3])) for r in rows]
