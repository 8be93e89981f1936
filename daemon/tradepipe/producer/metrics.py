"""The producer's Prometheus metrics (names fixed by ARCHITECTURE.md), on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# trade time -> broker ack: mostly milliseconds, seconds during a broker outage or a backfill
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "tradepipe_trades_received", "aggTrades received from the WebSocket feed",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.produced = Counter(
            "tradepipe_trades_produced",
            "aggTrades acknowledged by the broker",
            ["symbol"],
            registry=r,
        )
        self.duplicates = Counter(
            "tradepipe_duplicate_trades", "aggTrades dropped as already seen (overlap, backfill)",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.malformed = Counter(
            "tradepipe_malformed_messages", "messages rejected, by reason", ["reason"], registry=r
        )
        self.reconnects = Counter(
            "tradepipe_ws_reconnects", "WebSocket connections opened after the first", registry=r
        )
        self.rollovers = Counter(
            "tradepipe_ws_rollovers",
            "proactive connection rollovers (24 h limit, serverShutdown)",
            registry=r,
        )
        self.connect_failures = Counter(
            "tradepipe_ws_connect_failures", "failed WebSocket connection attempts", registry=r
        )
        self.connections = Gauge(
            "tradepipe_ws_connections", "open WebSocket connections", registry=r
        )
        self.gaps = Counter(
            "tradepipe_gaps_detected", "jumps in aggregate ids or catch-ups after a disconnect",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.backfilled = Counter(
            "tradepipe_trades_backfilled",
            "aggTrades fetched from REST and emitted",
            ["symbol"],
            registry=r,
        )
        self.unfilled = Counter(
            "tradepipe_gap_unfilled_trades",
            "aggregate ids given up on (REST lacked them or failed for too long)",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.abandoned = Counter(
            "tradepipe_catch_ups_abandoned",
            "open-ended catch-ups given up (REST failing too long; the ids show as a gap later)",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.reader_errors = Counter(
            "tradepipe_ws_reader_errors",
            "connections closed because handling a message raised an unexpected error",
            registry=r,
        )
        self.rest_requests = Counter(
            "tradepipe_rest_requests",
            "REST requests (aggTrades, exchangeInfo), by HTTP status or error",
            ["status"], registry=r,
        )  # fmt: skip
        self.deferred = Counter(
            "tradepipe_trades_deferred",
            "live aggTrades refused because the buffer was full (fetched from REST later)",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.kafka_errors = Counter(
            "tradepipe_kafka_errors",
            "failed broker sends or starts (records are resent)",
            registry=r,
        )
        self.buffered = Gauge(
            "tradepipe_buffered_messages", "records accepted and not yet acknowledged", registry=r
        )
        self.last_trade_age = Gauge(
            "tradepipe_last_trade_age_seconds", "now - trade time of the last trade acknowledged",
            ["symbol"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "tradepipe_trade_to_kafka_seconds", "trade time T -> broker acknowledgement",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.internal_latency = Histogram(
            "tradepipe_receive_to_kafka_seconds",
            "message received by the daemon -> broker acknowledgement (our own share of the "
            "trade-to-Kafka latency)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        # -- resume and poison records (ops-restart) --
        self.quarantined = Counter(
            "tradepipe_trades_quarantined",
            "accepted aggTrades the broker refuses for ever (too large, timestamp out of range, "
            "invalid record), written to the quarantine file instead, by reason",
            ["symbol", "reason"], registry=r,
        )  # fmt: skip
        # -- every symbol: shards and symbols by rule (issue 16) --
        self.shard_connected = Gauge(
            "tradepipe_ws_shard_connected", "1 while the shard has an open connection",
            ["shard"], registry=r,
        )  # fmt: skip
        self.shard_streams = Gauge(
            "tradepipe_ws_shard_streams", "streams the shard carries", ["shard"], registry=r
        )
        self.shard_messages = Counter(
            "tradepipe_ws_shard_messages", "messages received on the shard's connections",
            ["shard"], registry=r,
        )  # fmt: skip
        self.shard_reconnects = Counter(
            "tradepipe_ws_shard_reconnects", "connections the shard opened after its first",
            ["shard"], registry=r,
        )  # fmt: skip
        self.subscribe_errors = Counter(
            "tradepipe_ws_subscribe_errors",
            "SUBSCRIBE/UNSUBSCRIBE requests answered with an error",
            registry=r,
        )  # fmt: skip
        self.symbols = Gauge("tradepipe_symbols_subscribed", "symbols streamed now", registry=r)
        self.symbols_listed = Counter(
            "tradepipe_symbols_listed",
            "symbols added at an exchangeInfo refresh (feed.symbols = *)",
            registry=r,
        )
        self.symbols_delisted = Counter(
            "tradepipe_symbols_delisted",
            "symbols dropped at an exchangeInfo refresh (no longer TRADING or filtered out)",
            registry=r,
        )
        self.exchange_info_failures = Counter(
            "tradepipe_exchange_info_failures",
            "exchangeInfo reads that failed (the symbol list is kept; retried)",
            registry=r,
        )
