"""The exact, idempotent upsert of a batch of trades into ``trade_minutes``.

Rules:

1. **One transaction per batch.** Every row the batch touches is read, rebuilt and written in a
   single transaction: either all of the batch's minutes change or none do.
2. **Lock, then read.** The affected (symbol, minute) rows are read with ``SELECT ... FOR
   UPDATE`` on MySQL/MariaDB (InnoDB row and gap locks), after ``BEGIN IMMEDIATE`` on SQLite
   (the database's write lock). No other writer can change them until we commit.
3. **The ledger is the row.** Each row keeps ``agg_ids``, the exact set of aggregate ids it
   counts. The batch is aggregated with ``exclude=`` those ids, so a trade already stored is
   skipped: duplicate deliveries, overlapping objects and retries change nothing.
4. **Merge, never overwrite.** The stored row is rebuilt into the partial it was written from
   and merged with the new trades' partial (``MinutePartial.merge``: disjoint ids, exact sums).
   Merging partials of disjoint trade sets equals aggregating their union (core rule 3), so
   split minutes and any delivery order converge to the same row.
5. **Races are retried, whole.** A row that did not exist when read is written with a plain
   ``INSERT``: if a concurrent writer created it first, the duplicate key (1062) aborts us
   instead of overwriting its work. Deadlocks (1213), lock wait timeouts (1205) and lost
   connections roll back and the whole transaction is retried, bounded in attempts and time
   (stamina). A retry after an ambiguous commit is harmless by rule 3.
6. **A deadline is kept.** ``upsert(trades, deadline=...)`` (the Lambda's remaining time) bounds
   every wait on the database by it (``tradepipe.store.connection``, "Deadlines"), retries only
   while at least ``MIN_ATTEMPT_S`` is left, and then raises :class:`DeadlineExceeded` naming
   the last error: the transaction was never committed, so nothing of the batch is written.
7. **Order flow: unknown stays unknown, until proven.** A row stored before the order-flow
   columns existed has them NULL (its partial's ``flow`` is ``None``), and merging keeps them
   NULL (core rule 7). A batch that holds *every* trade such a row counts rebuilds it: the
   batch's own aggregate of that minute is written instead of the merge, but only if its
   seed columns equal the merge's (the recount proves the stored row); otherwise the row stays
   as merged, flow NULL. ``tradepipe load`` of the objects or tapes again therefore backfills.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import stamina

from tradepipe.core import IdRanges, MinuteKey, MinutePartial, Trade
from tradepipe.core.batch import TradeBatch
from tradepipe.store.connection import (
    Connection,
    Connector,
    DeadlineExceeded,
    is_connection_error,
    is_transient,
    time_left,
)
from tradepipe.store.migrations import require_current
from tradepipe.store.minutes import STORED_COLUMNS, TABLE, columns_sql, fetch_partials, values_of
from tradepipe.store.url import DbUrl, parse_db_url

_NONE = IdRanges()
# Under a deadline, no new attempt starts with less than this left.
MIN_ATTEMPT_S = 0.5


@dataclass(frozen=True, slots=True)
class UpsertResult:
    trades: int  # trades in the batch (repeats included)
    added: int  # distinct trades not stored before, now counted in a row
    rows: int  # rows inserted or changed

    @property
    def duplicates(self) -> int:
        return self.trades - self.added


def upsert_trades(conn: Connection, trades: Sequence[Trade] | TradeBatch) -> UpsertResult:
    """Rules 1-4 in one transaction on ``conn`` (no retry here: see :class:`Store`)."""
    batch = trades if isinstance(trades, TradeBatch) else TradeBatch.of_trades(trades)
    if not batch:
        return UpsertResult(0, 0, 0)
    keys = batch.keys()
    with conn.transaction():
        stored = fetch_partials(conn, keys, lock=True)
        if stored:
            new = batch.aggregate(lambda key: stored[key].ids if key in stored else _NONE)
        else:  # nothing stored yet for these minutes (the usual new object): no id checks
            new = batch.aggregate()
        inserts: list[MinutePartial] = []
        updates: list[MinutePartial] = []
        for key, part in new.items():
            if key in stored:
                updates.append(stored[key].merge(part))
            else:
                inserts.append(part)
        rebuilt = rebuilds(batch, stored, {p.key: p for p in updates})
        updates = [rebuilt.pop(p.key, p) for p in updates]
        updates.extend(rebuilt.values())  # rows with no new trade, only their flow filled in
        _write(conn, inserts, updates)
    added = sum(p.count_b + p.count_s for p in new.values())
    return UpsertResult(trades=len(batch), added=added, rows=len(inserts) + len(updates))


def rebuilds(
    batch: TradeBatch,
    stored: dict[MinuteKey, MinutePartial],
    merged: dict[MinuteKey, MinutePartial],
) -> dict[MinuteKey, MinutePartial]:
    """Rule 7: the rows whose unknown order flow this batch can fill in, rebuilt."""
    unknown = {key for key, part in stored.items() if part.flow is None}
    if not unknown:
        return {}
    full = batch.only(unknown).aggregate()
    out = {}
    for key, part in full.items():
        expected = merged.get(key, stored[key])
        if part.ids == expected.ids and replace(part, flow=None) == expected:
            out[key] = part
    return out


def _write(conn: Connection, inserts: list[MinutePartial], updates: list[MinutePartial]) -> None:
    cols = columns_sql(conn)
    marks = ", ".join([conn.ph] * len(STORED_COLUMNS))
    insert = f"INSERT INTO {TABLE} ({cols}) VALUES ({marks})"
    if updates:  # rows that exist and are locked: rewrite them with the merged values
        changed = [c for c in STORED_COLUMNS if c not in ("symbol", "timestamp")]
        if conn.dialect == "mysql":  # MariaDB has no `AS new` row alias: VALUES(col)
            sets = ", ".join(f"{conn.quote(c)} = VALUES({conn.quote(c)})" for c in changed)
            upsert = f"{insert} ON DUPLICATE KEY UPDATE {sets}"
        else:
            sets = ", ".join(f"{conn.quote(c)} = excluded.{conn.quote(c)}" for c in changed)
            upsert = f'{insert} ON CONFLICT ("symbol", "timestamp") DO UPDATE SET {sets}'
        conn.execute_many(upsert, [values_of(p) for p in updates])
    if inserts:  # new rows: a plain INSERT, so a concurrent first insert fails us (1062)
        conn.execute_many(insert, [values_of(p) for p in inserts])


class Store:
    """A lazily opened, reused connection and the retried upsert (rule 5).

    The connection opens on first use, is checked (``ping``) before each batch and reopened if
    it went away; a lost connection during a batch is dropped and the batch retried on a new
    one. On opening, the schema is checked (``require_current``): writers never migrate.
    """

    def __init__(
        self, url: DbUrl | str, *, attempts: int = 5, timeout: float = 20.0, wait_max: float = 1.0
    ) -> None:
        self.url = parse_db_url(url) if isinstance(url, str) else url
        self.attempts, self.timeout, self.wait_max = attempts, timeout, wait_max
        self._connector = Connector(self.url, on_open=require_current)

    def connection(self) -> Connection:
        return self._connector.get()

    def upsert(
        self, trades: Sequence[Trade] | TradeBatch, *, deadline: float | None = None
    ) -> UpsertResult:
        """Rules 1-5; with ``deadline`` (``time.monotonic()``), rule 6."""
        if not trades:
            return UpsertResult(0, 0, 0)
        if not isinstance(trades, TradeBatch):  # converted once, not on every retry
            trades = TradeBatch.of_trades(trades)
        budget = self.timeout
        left = time_left(deadline)
        if left is not None:
            if left <= 0:
                raise DeadlineExceeded("no time left to start the upsert")
            budget = min(budget, left)
        try:
            return self._attempts(trades, deadline, budget)
        except Exception as exc:
            left = time_left(deadline)
            if left is None or left >= MIN_ATTEMPT_S or not _timing(exc):
                raise
            raise DeadlineExceeded(
                f"gave up on the database {max(left, 0.0):.1f} s before the deadline, "
                f"nothing committed (last error: {type(exc).__name__}: {exc})"
            ) from exc

    def _attempts(self, trades: TradeBatch, deadline: float | None, budget: float) -> UpsertResult:
        for attempt in stamina.retry_context(
            on=_retryable(deadline),
            attempts=self.attempts,
            timeout=budget,
            wait_initial=0.05,
            wait_max=self.wait_max,
        ):
            with attempt:
                conn = self._connector.get(deadline)
                try:
                    return upsert_trades(conn, trades)
                except BaseException as exc:
                    if is_connection_error(exc) or isinstance(exc, DeadlineExceeded):
                        self.close()
                    raise
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    def close(self) -> None:
        self._connector.close()


def _timing(exc: BaseException) -> bool:
    """The error a deadline turns into :class:`DeadlineExceeded`: time ran out, or a transient
    one (a lost connection, a lock wait) that there is no time left to retry."""
    return isinstance(exc, DeadlineExceeded) or is_transient(exc)


def _retryable(deadline: float | None) -> Callable[[Exception], bool]:
    def retryable(exc: Exception) -> bool:
        left = time_left(deadline)
        return is_transient(exc) and (left is None or left >= MIN_ATTEMPT_S)

    return retryable
