"""Configuration, built once at the edge: a TOML file, then ``TRADEPIPE_<SECTION>_<KEY>``
environment overrides (lists comma-separated), validated with messages that name the key.

Nothing else in tradepipe reads ``os.environ``: shells receive a frozen :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRADEPIPE_"
# The producer's resume state inside systemd's $STATE_DIRECTORY (StateDirectory=tradepipe).
STATE_FILE_NAME = "producer-state.json"


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending key."""


def _symbols(value: list[str]) -> list[str]:
    out = [s.strip().lower() for s in value if s.strip()]
    if not out:
        raise ValueError("needs at least one symbol")
    for s in out:
        if not s.isalnum():
            raise ValueError(f"{s!r} is not a symbol like btcusdt")
    if len(out) > 1024:
        raise ValueError("Binance allows at most 1024 streams per connection")
    return out


def _hostport(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


def _url(*schemes: str) -> typing.Callable[[str], str]:
    def check(value: str) -> str:
        if not value.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"{value!r} must start with one of {', '.join(schemes)}://")
        return value.rstrip("/") if "sqlite" not in schemes else value

    return check


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"{value!r} must be > 0")
    return value


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check(fn: typing.Callable[[Any], Any]) -> dict[str, Any]:
    return {"check": fn}


@dataclass(frozen=True)
class FeedSettings:
    symbols: list[str] = field(default_factory=lambda: ["btcusdt"], metadata=_check(_symbols))
    ws_url: str = field(default="wss://stream.binance.com:9443", metadata=_check(_url("ws", "wss")))
    rest_url: str = field(default="https://api.binance.com", metadata=_check(_url("http", "https")))
    quarantine_path: str = "./data/quarantine.ndjson"
    # Open a fresh connection this long after connecting (Binance closes them at 24 h).
    rollover_seconds: float = field(default=23.5 * 3600, metadata=_check(_positive))
    backoff_max_seconds: float = field(default=30.0, metadata=_check(_positive))
    # /healthz turns 503 when no trade was acknowledged by the broker for this long.
    stall_seconds: float = field(default=60.0, metadata=_check(_positive))
    # Trades held (ahead of a gap) while REST backfills it; beyond that REST refetches them.
    max_held: int = field(default=20_000, metadata=_check(_positive))
    # Give up on a missing id range after REST failed this long (counted and logged).
    backfill_give_up_seconds: float = field(default=300.0, metadata=_check(_positive))
    # Our share of Binance's per-IP REST weight budget (6000/min); aggTrades costs 4.
    rest_weight_per_minute: int = field(default=1200, metadata=_check(_positive))
    quarantine_max_bytes: int = field(default=100 * 1024 * 1024, metadata=_check(_positive))
    # Resume state (last acknowledged id per symbol). Under systemd, $STATE_DIRECTORY (the unit's
    # StateDirectory=) decides instead, unless TRADEPIPE_FEED_STATE_PATH is set explicitly.
    state_path: str = field(default="./data/producer-state.json", metadata=_check(_nonempty))
    # A resume further behind than this many trades per symbol backfills only the newest ones;
    # the older ids are skipped, counted in tradepipe_gap_unfilled_trades_total and logged.
    max_resume_trades: int = field(default=200_000, metadata=_check(_positive))
    # How long start-up may spend reading the topic's tail and checking it against REST.
    resume_timeout_seconds: float = field(default=15.0, metadata=_check(_positive))


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "aggtrades"
    retention_ms: int = 300_000
    segment_ms: int = 60_000
    # 0: the producer batches by itself (one chunk in flight; chunks grow with the load);
    # measured 5 ms -> p50 13 ms vs 0 ms -> p50 1 ms receive->ack at 5,000 msg/s (README)
    linger_ms: int = 0
    max_batch_size: int = 262_144
    compression_type: str = "none"
    # Accepted, unacknowledged trades kept while the broker is slow or down (~300 B each);
    # when full, live trades are refused and fetched again from REST once there is room.
    buffer_max_messages: int = field(default=50_000, metadata=_check(_positive))
    request_timeout_ms: int = field(default=30_000, metadata=_check(_positive))
    replication_factor: int = field(default=1, metadata=_check(_positive))
    group_id: str = "tradepipe-sink"


@dataclass(frozen=True)
class SinkSettings:
    # How long after a minute ends the sink waits for late trades before writing it out.
    grace_seconds: float = 5.0
    max_object_trades: int = 200_000
    # The sink's own /metrics + /healthz (the producer has metrics.listen; both run on one host).
    metrics_listen: str = field(default="127.0.0.1:9109", metadata=_check(_hostport))
    # Give up on an object write after this long (the process exits; systemd restarts it and
    # it resumes from its last commit).
    retry_timeout_seconds: float = field(default=900.0, metadata=_check(_positive))
    # Write objects under this folder instead of S3 (same key layout); empty = S3.
    local_dir: str = ""
    # Records that are not aggTrades (null values, foreign producers), one JSON line each,
    # capped like the producer's (feed.quarantine_max_bytes).
    quarantine_path: str = "./data/sink-quarantine.ndjson"


@dataclass(frozen=True)
class S3Settings:
    bucket: str = ""
    prefix: str = "trades"
    endpoint_url: str = ""
    region: str = "us-east-1"


@dataclass(frozen=True)
class DbSettings:
    url: str = field(
        default="sqlite:///./data/tradepipe.db", metadata=_check(_url("sqlite", "mysql"))
    )


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = field(default="127.0.0.1:9108", metadata=_check(_hostport))


@dataclass(frozen=True)
class DashboardSettings:
    listen: str = field(default="127.0.0.1:8050", metadata=_check(_hostport))


@dataclass(frozen=True)
class LocalSettings:
    """``tradepipe run``: where its embedded stand-ins keep their data."""

    # Minute objects (the S3 key layout) when s3.bucket is not set.
    objects_dir: str = "./data/objects"
    # The sink's grace in local mode: rows of a closed minute must show within 3 s.
    grace_seconds: float = field(default=1.0, metadata=_check(_positive))
    # The in-process broker holds at most this many unwritten trades (back-pressure beyond).
    broker_max_messages: int = 200_000


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"


@dataclass(frozen=True)
class Settings:
    feed: FeedSettings = field(default_factory=FeedSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    sink: SinkSettings = field(default_factory=SinkSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    db: DbSettings = field(default_factory=DbSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @classmethod
    def load(cls, path: str | Path | None = None, environ: Mapping[str, str] = {}) -> Settings:
        """Build settings from an optional TOML file and an environment mapping."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        sections: dict[str, Any] = {}
        for top in dataclasses.fields(cls):
            raw = data.pop(top.name, {})
            if not isinstance(raw, dict):
                raise ConfigError(f"[{top.name}] must be a table")
            section_cls = _hints(cls)[top.name]
            sections[top.name] = _load_section(top.name, section_cls, raw, environ)
        if data:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(data))}")
        state_dir = _state_directory(environ)
        if state_dir is not None and f"{ENV_PREFIX}FEED_STATE_PATH" not in environ:
            sections["feed"] = dataclasses.replace(
                sections["feed"], state_path=str(Path(state_dir) / STATE_FILE_NAME)
            )
        return cls(**sections)

    def replace(self, **sections: Any) -> Settings:
        """A copy with some keys changed: ``replace(kafka={"topic": "x"})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


def _state_directory(environ: Mapping[str, str]) -> str | None:
    """systemd's ``$STATE_DIRECTORY`` (a colon-separated list when the unit names several:
    the first is ours); ``None`` when unset or empty."""
    first = environ.get("STATE_DIRECTORY", "").split(":")[0].strip()
    if not first:
        return None
    if not Path(first).is_absolute():
        raise ConfigError(f"STATE_DIRECTORY: {first!r} is not an absolute path")
    return first


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _load_section(
    name: str, section_cls: type, raw: dict[str, Any], environ: Mapping[str, str]
) -> Any:
    values: dict[str, Any] = {}
    hints = _hints(section_cls)
    known = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    for key, fld in known.items():
        env = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        where = f"{name}.{key}"
        if env in environ:
            where = f"{env} ({name}.{key})"
            value: Any = _from_env(environ[env], hints[key], where)
        elif key in raw:
            value = _from_toml(raw[key], hints[key], where)
        else:
            continue
        check = fld.metadata.get("check")
        if check is not None:
            try:
                value = check(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        values[key] = value
    return section_cls(**values)


def _from_env(text: str, hint: Any, where: str) -> Any:
    text = text.strip()
    if typing.get_origin(hint) is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: {text!r} is not a boolean")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ConfigError(f"{where}: {text!r} is not a number") from None
    return text


def _from_toml(value: Any, hint: Any, where: str) -> Any:
    if typing.get_origin(hint) is list:
        if isinstance(value, str):
            value = [v for v in value.split(",")]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = hint if isinstance(hint, type) else None
    if isinstance(hint, types.UnionType):
        expected = None
    if expected is not None and (
        not isinstance(value, expected) or isinstance(value, bool) != (expected is bool)
    ):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__}")
    return value
