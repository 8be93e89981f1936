-- Order-flow columns of trade_minutes (core/flow.py; docs/orderflow.md): per side, the largest
-- aggTrade by quote notional (p x q), and per notional bucket (< 1k, 1k-10k, 10k-100k,
-- 100k-1M, >= 1M quote units) the count of aggTrades and their summed notional.
-- All NULL in rows written before this migration: unknown, not zero. The upsert keeps them NULL
-- when such a row gets new trades, and rebuilds them from a batch holding every trade the row
-- counts (`tradepipe load` of the objects or tapes again).
-- Widths as for total_usd_*: a notional has at most 40 integer digits and 16 places.
-- One ALTER: MariaDB applies it whole or not at all; IF NOT EXISTS makes it re-runnable.
ALTER TABLE `trade_minutes`
  ADD COLUMN IF NOT EXISTS `max_usd_b` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `max_usd_s` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `count_lt1k_b` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `count_lt1k_s` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `usd_lt1k_b` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `usd_lt1k_s` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `count_1k_10k_b` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `count_1k_10k_s` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `usd_1k_10k_b` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `usd_1k_10k_s` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `count_10k_100k_b` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `count_10k_100k_s` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `usd_10k_100k_b` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `usd_10k_100k_s` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `count_100k_1m_b` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `count_100k_1m_s` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `usd_100k_1m_b` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `usd_100k_1m_s` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `count_ge1m_b` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `count_ge1m_s` BIGINT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS `usd_ge1m_b` DECIMAL(65,16) NULL,
  ADD COLUMN IF NOT EXISTS `usd_ge1m_s` DECIMAL(65,16) NULL;
