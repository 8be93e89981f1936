"""The emulator's settings, with Binance's values as defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    host: str = "127.0.0.1"
    port: int = 0
    # Data time runs `speed` times as fast as wall time; 0 = as fast as possible.
    speed: float = 1.0
    # Start the clock at once instead of when the first client subscribes.
    start_now: bool = False
    # Serve trade times shifted so the first trade is "now", compressed by the speed.
    rebase_time: bool = False
    # Start over at the end of the data (ids and times continue, so nothing repeats).
    loop: bool = False
    # Write every published trade as its raw event line here (the tally for tests).
    record_path: str | None = None
    # Binance: a ping frame every 20 s; no pong within 1 minute closes the connection.
    ping_interval: float = 20.0
    pong_timeout: float = 60.0
    # Binance closes a connection after 24 hours.
    max_connection_seconds: float = 24 * 3600.0
    # Binance: 5 incoming messages per second (ping, pong, JSON) per connection; 0 = no limit.
    max_incoming_per_second: int = 5
    max_streams: int = 1024
    # REST request weight allowed per minute (Binance: 6000); aggTrades weighs 4.
    rest_weight_limit: int = 6000
    # REST keeps at most this many published trades per symbol (bounds memory with --loop).
    rest_history: int = 5_000_000
    # Mix this many malformed messages in at random tape positions (seeded).
    malformed: int = 0
    seed: int = 0
    # Per-connection send queue: above `queue_high_water` messages the publisher waits for the
    # client; a client still behind after `slow_client_seconds` is disconnected (slow consumer).
    queue_high_water: int = 20_000
    slow_client_seconds: float = 10.0
    # Trades published per step at speed 0, between yields to the event loop.
    batch: int = 500
    # Serve the /_control/ endpoints (fault injection over HTTP).
    control: bool = True
    # Symbols of the tape that are not trading at the start (listed later: replay/market.py).
    unlisted: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "speed": self.speed >= 0,
            "port": 0 <= self.port <= 65535,
            "ping_interval": self.ping_interval > 0,
            "pong_timeout": self.pong_timeout > 0,
            "max_connection_seconds": self.max_connection_seconds > 0,
            "max_incoming_per_second": self.max_incoming_per_second >= 0,
            "max_streams": self.max_streams > 0,
            "rest_weight_limit": self.rest_weight_limit > 0,
            "malformed": self.malformed >= 0,
            "rest_history": self.rest_history > 0,
            "queue_high_water": self.queue_high_water > 0,
            "slow_client_seconds": self.slow_client_seconds > 0,
            "batch": self.batch > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid replay option(s): {', '.join(bad)}")
