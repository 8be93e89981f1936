-- trade_minutes: the row contract (ARCHITECTURE.md), one row per (symbol, minute).
-- Widths: prices and quantities have at most 20 integer digits and 8 places (core/trade.py);
-- base sums DECIMAL(38,8) leave 10 more integer digits of headroom; a quote amount p x q has at
-- most 40 integer digits and 16 places, so DECIMAL(65,16) holds any sum of them exactly.
-- agg_ids is the bookkeeping that makes the upsert idempotent: the exact set of aggregate ids
-- counted in the row, as id ranges ("665076760-665076999,665077001").
CREATE TABLE IF NOT EXISTS `trade_minutes` (
  `symbol`        VARCHAR(32)     NOT NULL,
  `timestamp`     DATETIME        NOT NULL,
  `total_count_b` BIGINT UNSIGNED NOT NULL,
  `total_count_s` BIGINT UNSIGNED NOT NULL,
  `total_btc_b`   DECIMAL(38,8)   NOT NULL,
  `total_btc_s`   DECIMAL(38,8)   NOT NULL,
  `total_usd_b`   DECIMAL(65,16)  NOT NULL,
  `total_usd_s`   DECIMAL(65,16)  NOT NULL,
  `avg_b`         DECIMAL(38,8)   NULL,
  `avg_s`         DECIMAL(38,8)   NULL,
  `trades_b`      BIGINT UNSIGNED NOT NULL,
  `trades_s`      BIGINT UNSIGNED NOT NULL,
  `first_agg_id`  BIGINT UNSIGNED NOT NULL,
  `last_agg_id`   BIGINT UNSIGNED NOT NULL,
  `open`          DECIMAL(38,8)   NOT NULL,
  `high`          DECIMAL(38,8)   NOT NULL,
  `low`           DECIMAL(38,8)   NOT NULL,
  `close`         DECIMAL(38,8)   NOT NULL,
  `agg_ids`       MEDIUMTEXT      CHARACTER SET ascii NOT NULL,
  PRIMARY KEY (`symbol`, `timestamp`),
  KEY `trade_minutes_timestamp` (`timestamp`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
