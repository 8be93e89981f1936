-- Order-flow columns of trade_minutes (core/flow.py; docs/orderflow.md): per side, the largest
-- aggTrade by quote notional (p x q), and per notional bucket (< 1k, 1k-10k, 10k-100k,
-- 100k-1M, >= 1M quote units) the count of aggTrades and their summed notional.
-- All NULL in rows written before this migration: unknown, not zero. The upsert keeps them NULL
-- when such a row gets new trades, and rebuilds them from a batch holding every trade the row
-- counts (`tradepipe load` of the objects or tapes again).
-- SQLite: decimals as fixed-scale TEXT (16 places), as for total_usd_*; counts INTEGER.
ALTER TABLE "trade_minutes" ADD COLUMN "max_usd_b" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "max_usd_s" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_lt1k_b" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_lt1k_s" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_lt1k_b" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_lt1k_s" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_1k_10k_b" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_1k_10k_s" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_1k_10k_b" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_1k_10k_s" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_10k_100k_b" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_10k_100k_s" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_10k_100k_b" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_10k_100k_s" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_100k_1m_b" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_100k_1m_s" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_100k_1m_b" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_100k_1m_s" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_ge1m_b" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "count_ge1m_s" INTEGER NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_ge1m_b" TEXT NULL;
ALTER TABLE "trade_minutes" ADD COLUMN "usd_ge1m_s" TEXT NULL;
