"""tradepipe: Binance aggTrades -> Kafka -> S3 -> exact per-minute buy/sell aggregates.

The business logic lives in :mod:`tradepipe.core` (pure, synchronous, no network imports);
everything else is a thin shell around it.
"""

__version__ = "0.1.0"
