"""What travels from the feed to the broker: one accepted trade, ready to publish."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Record:
    """One aggTrade as it will be written to the broker.

    ``key`` is the symbol (``b"BTCUSDT"``); ``value`` the aggTrade JSON object as received (the
    inner ``data`` of a combined-stream message, or a REST element completed with ``e``, ``E``
    and ``s``); ``time_ms`` the trade time ``T`` (the message timestamp). ``backfilled`` marks
    trades that came from REST rather than the live stream.
    """

    symbol: str
    agg_id: int
    time_ms: int
    value: bytes
    backfilled: bool = False
    received_at: float = 0.0  # time.monotonic() when it reached us

    @property
    def key(self) -> bytes:
        return self.symbol.encode()
