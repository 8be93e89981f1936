"""The sink's Prometheus metrics (``tradepipe_sink_*``), on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "tradepipe_sink_records_consumed_total", "Kafka records read", registry=r
        )
        self.malformed = Counter(
            "tradepipe_sink_malformed_records_total",
            "Kafka records that are not aggTrades (skipped, logged)",
            ["reason"],
            registry=r,
        )
        self.replay_skipped = Counter(
            "tradepipe_sink_replay_skipped_records_total",
            "Records re-read after a restart that were already in written objects",
            registry=r,
        )
        self.objects = Counter(
            "tradepipe_sink_objects_written_total", "Objects written", ["reason"], registry=r
        )
        self.trades = Counter(
            "tradepipe_sink_trades_written_total", "Trades in written objects", registry=r
        )
        self.bytes = Counter(
            "tradepipe_sink_bytes_written_total", "Compressed bytes written", registry=r
        )
        self.put_retries = Counter(
            "tradepipe_sink_put_retries_total", "Object writes retried after an error", registry=r
        )
        self.put_errors = Counter(
            "tradepipe_sink_put_errors_total",
            "Failed object write attempts",
            ["error"],
            registry=r,
        )
        self.put_seconds = Histogram(
            "tradepipe_sink_put_seconds",
            "Time to write one object, retries included",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.offset_resets = Counter(
            "tradepipe_sink_offset_resets_total",
            "Offsets found deleted (retention) or past the log end, resumed at the log start",
            ["partition"],
            registry=r,
        )
        self.records_skipped = Counter(
            "tradepipe_sink_records_skipped_total",
            "Records deleted from Kafka before the sink read them (skipped by offset resets)",
            ["partition"],
            registry=r,
        )
        self.commits = Counter(
            "tradepipe_sink_commits_total", "Kafka offset commits (after spooling)", registry=r
        )
        self.held = Gauge(
            "tradepipe_sink_held_records", "Records held in objects not yet written", registry=r
        )
        self.spool_bytes = Gauge(
            "tradepipe_sink_spool_bytes",
            "Bytes the spool's database uses (its bound: sink.spool_max_bytes)",
            registry=r,
        )
        self.spool_records = Gauge(
            "tradepipe_sink_spool_records",
            "Records in the spool (read from Kafka, committed there, not yet trimmed)",
            registry=r,
        )
        self.spool_oldest = Gauge(
            "tradepipe_sink_spool_oldest_record_age_seconds",
            "How long the oldest record still in the spool has been there (0: empty)",
            registry=r,
        )
        self.spool_paused = Gauge(
            "tradepipe_sink_spool_paused",
            "1 while reading is paused because the spool reached sink.spool_max_bytes",
            registry=r,
        )
        self.spool_pauses = Counter(
            "tradepipe_sink_spool_pauses_total",
            "Times reading paused at the spool's bound",
            registry=r,
        )
        self.lag = Gauge(
            "tradepipe_sink_minute_flush_delay_seconds",
            "Wall-clock delay between a flushed minute's end and its write (last flush)",
            registry=r,
        )
