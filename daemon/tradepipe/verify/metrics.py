"""The Prometheus figures of verify runs.

A timer run (``tradepipe-verify.service``, a oneshot) has no process left to scrape: it writes
them to a file for node_exporter's textfile collector (``verify.textfile``, written atomically by
``prometheus_client.write_to_textfile``); ``tradepipe run``'s background verify registers them on
the pipeline's registry instead. Gauges describe the last run; counters add up within a process
(for a oneshot: that run).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from tradepipe.core.checks import Status
from tradepipe.verify.runner import Report


class VerifyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.minutes = Gauge(
            "tradepipe_verify_minutes", "minutes of the last verify run, by status",
            ["status"], registry=r,
        )  # fmt: skip
        self.checked = Counter(
            "tradepipe_verify_minutes_checked", "minutes checked, by status", ["status"], registry=r
        )
        self.repaired = Counter(
            "tradepipe_verify_minutes_repaired", "minutes made exact by a repair", registry=r
        )
        self.trades_repaired = Counter(
            "tradepipe_verify_trades_repaired",
            "trades fetched from the exchange and newly counted in rows by a repair",
            registry=r,
        )
        self.failures = Counter(
            "tradepipe_verify_failures", "verify runs stopped by the database or the exchange",
            registry=r,
        )  # fmt: skip
        self.last_run = Gauge(
            "tradepipe_verify_last_run_timestamp_seconds", "when the last verify run ended",
            registry=r,
        )  # fmt: skip
        self.last_all_exact = Gauge(
            "tradepipe_verify_last_run_all_exact", "1 if every minute of the last run was exact",
            registry=r,
        )  # fmt: skip
        for s in Status:
            self.minutes.labels(s.value)
            self.checked.labels(s.value)

    def record(self, report: Report) -> None:
        for status, n in report.counts().items():
            self.minutes.labels(status).set(n)
            self.checked.labels(status).inc(n)
        self.repaired.inc(report.minutes_repaired)
        self.trades_repaired.inc(report.trades_repaired)
        self.last_all_exact.set(1 if report.all_exact else 0)
        self.last_run.set(time.time())

    def failed(self) -> None:
        self.failures.inc()
        self.last_run.set(time.time())

    def write(self, path: str) -> None:
        """Write every figure to ``path`` for the textfile collector (atomic rename)."""
        write_to_textfile(path, self.registry)
