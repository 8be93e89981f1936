-- trade_minutes for SQLite (local mode): the same columns as MySQL. SQLite has no exact
-- DECIMAL, so decimals are TEXT in the contract's fixed-scale plain notation (8 places; 16 for
-- total_usd_*), which reads back exactly; timestamp is TEXT 'YYYY-MM-DD HH:MM:00' (UTC), which
-- sorts and compares as time. agg_ids: the aggregate ids counted in the row (idempotency).
CREATE TABLE IF NOT EXISTS "trade_minutes" (
  "symbol"        TEXT    NOT NULL,
  "timestamp"     TEXT    NOT NULL,
  "total_count_b" INTEGER NOT NULL,
  "total_count_s" INTEGER NOT NULL,
  "total_btc_b"   TEXT    NOT NULL,
  "total_btc_s"   TEXT    NOT NULL,
  "total_usd_b"   TEXT    NOT NULL,
  "total_usd_s"   TEXT    NOT NULL,
  "avg_b"         TEXT    NULL,
  "avg_s"         TEXT    NULL,
  "trades_b"      INTEGER NOT NULL,
  "trades_s"      INTEGER NOT NULL,
  "first_agg_id"  INTEGER NOT NULL,
  "last_agg_id"   INTEGER NOT NULL,
  "open"          TEXT    NOT NULL,
  "high"          TEXT    NOT NULL,
  "low"           TEXT    NOT NULL,
  "close"         TEXT    NOT NULL,
  "agg_ids"       TEXT    NOT NULL,
  PRIMARY KEY ("symbol", "timestamp")
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS "trade_minutes_timestamp" ON "trade_minutes" ("timestamp");
