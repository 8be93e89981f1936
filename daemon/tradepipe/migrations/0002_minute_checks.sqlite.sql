-- minute_checks for SQLite: the same columns as MySQL; timestamp and checked_at are TEXT
-- 'YYYY-MM-DD HH:MM:SS' (UTC), detail is JSON text.
CREATE TABLE IF NOT EXISTS "minute_checks" (
  "symbol"     TEXT NOT NULL,
  "timestamp"  TEXT NOT NULL,
  "status"     TEXT NOT NULL,
  "detail"     TEXT NOT NULL,
  "checked_at" TEXT NOT NULL,
  PRIMARY KEY ("symbol", "timestamp")
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS "minute_checks_status" ON "minute_checks" ("status");
