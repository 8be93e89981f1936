-- minute_checks: what `tradepipe verify` found for each (symbol, minute) it checked; read by the
-- dashboard. status: exact | mismatch | missing | hole (core/checks.py, rule 4); detail: JSON
-- (differences with both values, holes with their id ranges, trade counts); checked_at: UTC.
CREATE TABLE IF NOT EXISTS `minute_checks` (
  `symbol`     VARCHAR(32) NOT NULL,
  `timestamp`  DATETIME    NOT NULL,
  `status`     VARCHAR(16) CHARACTER SET ascii NOT NULL,
  `detail`     MEDIUMTEXT  NOT NULL,
  `checked_at` DATETIME    NOT NULL,
  PRIMARY KEY (`symbol`, `timestamp`),
  KEY `minute_checks_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
