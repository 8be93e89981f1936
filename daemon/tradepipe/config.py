"""Configuration, built once at the edge: defaults, then a TOML file, then
``TRADEPIPE_<SECTION>_<KEY>`` environment overrides (lists comma-separated), validated by
msgspec against the constraints written on each key below.

Rules:

1. Every key is one field of a frozen :class:`msgspec.Struct`, with its bounds, pattern or
   choices and its description in ``Annotated[..., msgspec.Meta(...)]``. That is the whole
   validation, and ``python -m tradepipe.config_table`` renders the same fields as the table in
   ``docs/configuration.md``.
2. One key per concept. A choice between components is an explicit key with ``Literal``
   choices (``local.broker``, ``sink.objects``); no code asks whether a key was given.
3. Layers, later ones win: the field defaults, a command's defaults (:data:`RUN_DEFAULTS` for
   ``tradepipe run``), the TOML file, the environment. Under systemd, ``$STATE_DIRECTORY``
   decides ``feed.state_path`` unless ``TRADEPIPE_FEED_STATE_PATH`` is set, and
   ``sink.spool_dir`` unless ``TRADEPIPE_SINK_SPOOL_DIR`` is set.
4. Unknown sections and keys are refused, and so are ``TRADEPIPE_<SECTION>_*`` variables that
   name no key (except :data:`READ_ELSEWHERE`). An invalid value gives one :class:`ConfigError` line
   naming the key (and the environment variable when it came from there):
   ``sink.grace_seconds: expected number >= 0, got -1``. A password in a URL is shown as ``***``.

Nothing else in tradepipe reads ``os.environ``: shells receive a frozen :class:`Settings`.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi

ENV_PREFIX = "TRADEPIPE_"
# The producer's resume state inside systemd's $STATE_DIRECTORY (StateDirectory=tradepipe).
STATE_FILE_NAME = "producer-state.json"
# The sink's spool inside its unit's $STATE_DIRECTORY (StateDirectory=tradepipe-sink).
SPOOL_DIR_NAME = "spool"


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending key and never holds a password."""


def _meta(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=description)


# -- value types: what each kind of key accepts (the table prints the title where one is set) --
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(gt=0)]
FilePath = Annotated[str, msgspec.Meta(pattern=r"\S", title="PATH")]
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
HostPort = Annotated[str, msgspec.Meta(pattern=rf"^{_HOST}:{_PORT}$", title="HOST:PORT")]
HostPorts = Annotated[
    str,
    msgspec.Meta(
        pattern=rf"^{_HOST}:{_PORT}(,{_HOST}:{_PORT})*$", title="HOST:PORT[,HOST:PORT...]"
    ),
]
Symbol = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]+$", title="symbol like btcusdt")]
SymbolOrAll = Annotated[
    str, msgspec.Meta(pattern=r"^([A-Za-z0-9]+|\*)$", title="symbol like btcusdt, or *")
]
Asset = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]+$", title="asset like USDT")]
ALL_SYMBOLS = "*"
WsUrl = Annotated[str, msgspec.Meta(pattern=r"^wss?://\S+$", title="ws:// or wss:// URL")]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", title="http:// or https:// URL")]
DbUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(sqlite|mysql|mariadb|mysql\+pymysql)://",
        title="sqlite:///PATH or mysql://USER:PASSWORD@HOST:PORT/DB",
    ),
]
Topic = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,249}$", title="Kafka topic name")]
NonBlank = Annotated[str, msgspec.Meta(pattern=r"\S", title="non-empty text")]
Bucket = Annotated[
    str,
    msgspec.Meta(pattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$", title="S3 bucket name or empty"),
]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class FeedSettings(_Section, frozen=True):
    symbols: Annotated[
        list[SymbolOrAll],
        msgspec.Meta(min_length=1, max_length=10_000, title="symbols like btcusdt, or *"),
        _meta(
            "the symbols to stream (lower-cased), or * alone: every TRADING symbol of "
            "/api/v3/exchangeInfo (filtered by feed.quote_assets), refreshed every "
            "feed.symbols_refresh_seconds"
        ),
    ] = msgspec.field(default_factory=lambda: ["btcusdt"])
    quote_assets: Annotated[
        list[Asset],
        _meta("with feed.symbols = *: only symbols quoted in these (e.g. USDT); empty: all"),
    ] = msgspec.field(default_factory=list)
    symbols_refresh_seconds: Annotated[
        Seconds,
        _meta("with feed.symbols = *: how often exchangeInfo is read again (weight 20 a time)"),
    ] = 300.0
    max_streams_per_connection: Annotated[
        int,
        msgspec.Meta(ge=1, le=1000),
        _meta(
            "streams per WebSocket connection (Binance allows 1024); more symbols open more "
            "connections, each with its own rollover and reconnect"
        ),
    ] = 200
    ws_url: Annotated[WsUrl, _meta("WebSocket base; the producer appends /stream?streams=...")] = (
        "wss://stream.binance.com:9443"
    )
    rest_url: Annotated[HttpUrl, _meta("REST base (/api/v3/aggTrades, /api/v3/exchangeInfo)")] = (
        "https://api.binance.com"
    )
    quarantine_path: Annotated[
        FilePath, _meta("rejected messages and records Kafka refuses, one JSON line each")
    ] = "./data/quarantine.ndjson"
    rollover_seconds: Annotated[
        Seconds, _meta("open a fresh connection this long after connecting (Binance cuts at 24 h)")
    ] = 23.5 * 3600
    backoff_max_seconds: Annotated[Seconds, _meta("reconnect backoff cap (full jitter)")] = 30.0
    stall_seconds: Annotated[
        Seconds,
        _meta(
            "work waiting and nothing acknowledged this long = stalled (/healthz 503; the "
            "watchdog is withheld after the broker client's grace)"
        ),
    ] = 60.0
    max_held: Annotated[
        Count,
        _meta(
            "live trades held ahead of gaps while REST backfills them, all symbols together; at "
            "most half of kafka.buffer_max_messages (lowered, with a warning, if larger)"
        ),
    ] = 20_000
    backfill_give_up_seconds: Annotated[
        Seconds,
        _meta("give up on a missing id range after REST failed this long in a row (logged)"),
    ] = 300.0
    rest_weight_per_minute: Annotated[
        int,
        msgspec.Meta(gt=0, le=6000),
        _meta("our share of Binance's 6000/min per-IP REST weight (aggTrades costs 4)"),
    ] = 1200
    quarantine_max_bytes: Annotated[
        Count, _meta("feed.quarantine_path (and sink.quarantine_path) stop growing at this size")
    ] = 100 * 1024 * 1024
    state_path: Annotated[
        FilePath,
        _meta(
            "resume state (last acknowledged id per symbol); under systemd "
            "$STATE_DIRECTORY/producer-state.json instead, unless TRADEPIPE_FEED_STATE_PATH is set"
        ),
    ] = "./data/producer-state.json"
    max_resume_trades: Annotated[
        Count,
        _meta(
            "a restart further behind than this per symbol backfills only the newest ones (the "
            "rest counted in tradepipe_gap_unfilled_trades_total and logged)"
        ),
    ] = 200_000
    resume_timeout_seconds: Annotated[
        Seconds, _meta("start-up time allowed for reading the topic's tail and the REST check")
    ] = 15.0

    def __post_init__(self) -> None:
        if ALL_SYMBOLS in self.symbols and self.symbols != [ALL_SYMBOLS]:
            raise ValueError("feed.symbols: * stands alone (every symbol), not in a list")
        if self.quote_assets and self.symbols != [ALL_SYMBOLS]:
            raise ValueError("feed.quote_assets filters feed.symbols = *; a list names them")
        msgspec.structs.force_setattr(self, "symbols", [s.lower() for s in self.symbols])
        msgspec.structs.force_setattr(self, "quote_assets", [a.upper() for a in self.quote_assets])
        msgspec.structs.force_setattr(self, "ws_url", self.ws_url.rstrip("/"))
        msgspec.structs.force_setattr(self, "rest_url", self.rest_url.rstrip("/"))

    @property
    def by_rule(self) -> bool:
        """``feed.symbols = *``: the symbols come from exchangeInfo."""
        return self.symbols == [ALL_SYMBOLS]


class KafkaSettings(_Section, frozen=True):
    bootstrap_servers: Annotated[HostPorts, _meta("the Kafka brokers")] = "127.0.0.1:9092"
    topic: Annotated[Topic, _meta("the aggTrade topic")] = "aggtrades"
    retention_ms: Annotated[
        int,
        msgspec.Meta(ge=-1),
        _meta("retention.ms of a topic the producer creates (-1: for ever)"),
    ] = 300_000
    segment_ms: Annotated[Count, _meta("segment.ms when the producer creates the topic")] = 60_000
    partitions: Annotated[
        Count,
        _meta(
            "partitions of a topic the producer creates (several tradepipe sink instances in "
            "one group divide them); an existing topic with fewer stops the producer (exit 2)"
        ),
    ] = 1
    linger_ms: Annotated[
        int,
        msgspec.Meta(ge=0),
        _meta(
            "how long a trade may wait for others to join its Kafka request (linger.ms; one "
            "request in flight, so requests grow with the load anyway); 400 symbols at 3,000 "
            "msg/s: 5 ms cost 20 % of a core, trade->ack p99 13 ms; 0: 36 %, 8 ms"
        ),
    ] = 5
    max_batch_size: Annotated[Count, _meta("bytes per partition batch (aiokafka's)")] = 262_144
    compression_type: Annotated[
        Literal["none", "gzip"],
        _meta("the codecs aiokafka can use here (snappy, lz4, zstd need libraries not installed)"),
    ] = "none"
    buffer_max_messages: Annotated[
        Count,
        _meta(
            "the producer's one memory bound: accepted, unacknowledged trades (~300 B each); when "
            "full, live trades are refused and fetched again from REST once there is room"
        ),
    ] = 50_000
    request_timeout_ms: Annotated[
        Count, _meta("a send not acknowledged in 4x this rebuilds the Kafka producer")
    ] = 30_000
    replication_factor: Annotated[
        Count, _meta("replication factor when the producer creates the topic")
    ] = 1
    group_id: Annotated[NonBlank, _meta("the sink's consumer group")] = "tradepipe-sink"


class SinkSettings(_Section, frozen=True):
    grace_seconds: Annotated[
        float,
        msgspec.Meta(ge=0),
        _meta("how long after a minute ends the sink waits for late trades before writing it"),
    ] = 5.0
    max_object_trades: Annotated[
        Count, _meta("an object reaching this many trades writes every open object")
    ] = 200_000
    metrics_listen: Annotated[
        HostPort, _meta("the sink's /metrics and /healthz (beside the producer's metrics.listen)")
    ] = "127.0.0.1:9109"
    spool_dir: Annotated[
        FilePath,
        _meta(
            "the durable spool between Kafka and the object writer (sink-spool.sqlite3); under "
            "systemd $STATE_DIRECTORY/spool instead, unless TRADEPIPE_SINK_SPOOL_DIR is set"
        ),
    ] = "./data/spool"
    spool_max_bytes: Annotated[
        Count,
        _meta(
            "the spool's bound: at this size reading pauses (alarm on /healthz and "
            "tradepipe_sink_spool_paused), never drops; it resumes below 90 % of it"
        ),
    ] = 2 * 1024 * 1024 * 1024
    objects: Annotated[
        Literal["s3", "folder"],
        _meta("where minute objects go: s3 (s3.bucket, required) or folder (sink.objects_dir)"),
    ] = "s3"
    objects_dir: Annotated[
        FilePath, _meta("the folder of sink.objects = folder, in the S3 key layout")
    ] = "./data/objects"
    layout: Annotated[
        Literal["per_minute", "per_symbol"],
        _meta(
            "per_minute: one object per trade minute per Kafka partition, every symbol in it "
            "(~1,440 puts a day per partition); per_symbol: one per symbol per minute "
            "(docs/scale-layout.md)"
        ),
    ] = "per_minute"
    quarantine_path: Annotated[
        FilePath,
        _meta("records that are not aggTrades, one JSON line each (capped like feed's)"),
    ] = "./data/sink-quarantine.ndjson"


class S3Settings(_Section, frozen=True):
    bucket: Annotated[Bucket, _meta("the objects' bucket (sink.objects = s3)")] = ""
    prefix: Annotated[
        str,
        msgspec.Meta(pattern=r"^\S*$", title="text without spaces"),
        _meta("key prefix, before date=... (per_symbol: symbol=.../date=...)"),
    ] = "trades"
    endpoint_url: Annotated[
        str,
        msgspec.Meta(pattern=r"^(https?://\S+)?$", title="http:// or https:// URL, or empty"),
        _meta("an S3-compatible server (MinIO, moto); empty: AWS"),
    ] = ""
    region: Annotated[NonBlank, _meta("the bucket's region")] = "us-east-1"


class DbSettings(_Section, frozen=True):
    url: Annotated[
        DbUrl, _meta("the database of trade_minutes; the scheme chooses SQLite or MySQL/MariaDB")
    ] = "sqlite:///./data/tradepipe.db"


class MetricsSettings(_Section, frozen=True):
    listen: Annotated[HostPort, _meta("the producer's /metrics and /healthz")] = "127.0.0.1:9108"


class DashboardSettings(_Section, frozen=True):
    listen: Annotated[HostPort, _meta("the dashboard's page and API")] = "127.0.0.1:8050"


class LocalSettings(_Section, frozen=True):
    """``tradepipe run`` only."""

    broker: Annotated[
        Literal["memory", "kafka"],
        _meta("tradepipe run's broker: the in-process log, or Kafka (kafka.*); --kafka sets it"),
    ] = "memory"
    broker_max_messages: Annotated[
        Count, _meta("the in-process log's bound on unwritten trades (back-pressure beyond)")
    ] = 200_000


class VerifySettings(_Section, frozen=True):
    """``tradepipe verify`` and ``tradepipe run``'s background verify (docs/verify.md)."""

    interval_seconds: Annotated[
        float,
        msgspec.Meta(ge=0),
        _meta("tradepipe run: seconds between background verify passes (0: none)"),
    ] = 10.0
    textfile: Annotated[
        str,
        _meta("tradepipe verify: write the run's metrics here for node_exporter (empty: none)"),
    ] = ""


class LogSettings(_Section, frozen=True):
    level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        _meta("log level (JSON lines on stdout)"),
    ] = "info"


# What `tradepipe run` changes before the file and the environment (rule 3): rows of a closed
# minute show within 3 s, and the objects go to a folder unless S3 is asked for.
RUN_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "sink": {"grace_seconds": 1.0, "objects": "folder"},
}


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    feed: FeedSettings = msgspec.field(default_factory=FeedSettings)
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    sink: SinkSettings = msgspec.field(default_factory=SinkSettings)
    s3: S3Settings = msgspec.field(default_factory=S3Settings)
    db: DbSettings = msgspec.field(default_factory=DbSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    dashboard: DashboardSettings = msgspec.field(default_factory=DashboardSettings)
    local: LocalSettings = msgspec.field(default_factory=LocalSettings)
    verify: VerifySettings = msgspec.field(default_factory=VerifySettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        environ: Mapping[str, str] = {},
        defaults: Mapping[str, Mapping[str, Any]] = {},
    ) -> Settings:
        """Build settings from ``defaults`` (e.g. :data:`RUN_DEFAULTS`), an optional TOML file
        and an environment mapping (rule 3)."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        tree: dict[str, dict[str, Any]] = {}
        env_names: dict[tuple[str, str], str] = {}
        for section, keys in SECTIONS.items():
            raw = data.get(section, {})
            if not isinstance(raw, dict):
                raise ConfigError(f"[{section}] must be a table")
            unknown = set(raw) - set(keys)
            if unknown:
                raise ConfigError(f"unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
            values = {**defaults.get(section, {}), **raw}
            for key, hint in keys.items():
                env = env_name(section, key)
                if env in environ:
                    env_names[section, key] = env
                    values[key] = _from_env(environ[env], hint, f"{env} ({section}.{key})")
                elif key in values:
                    values[key] = _tidy(values[key], hint)
            tree[section] = values
        _refuse_unknown_variables(environ)
        _place_state(tree, environ)
        return _convert(tree, env_names)

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some keys changed, validated like a file:
        ``replace(kafka={"topic": "x"})``."""
        tree = msgspec.to_builtins(self)
        for name, values in sections.items():
            if name not in SECTIONS:
                raise ConfigError(f"unknown config section(s): {name}")
            unknown = set(values) - set(SECTIONS[name])
            if unknown:
                raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
            tree[name].update(values)
        return _convert(tree, {})


def require_objects_target(settings: Settings) -> None:
    """``sink.objects = "s3"`` needs ``s3.bucket``: a cross-key rule, checked by the commands
    that write objects (``tradepipe sink``, ``tradepipe run``)."""
    if settings.sink.objects == "s3" and not settings.s3.bucket:
        raise ConfigError(
            's3.bucket (TRADEPIPE_S3_BUCKET) is required when sink.objects = "s3" '
            '(or set sink.objects = "folder" to write under sink.objects_dir)'
        )


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


# ``TRADEPIPE_<SECTION>_...`` variables that are not keys, read by something else on purpose.
READ_ELSEWHERE = {
    "TRADEPIPE_DB_SECRET_ID": "the Lambda's Secrets Manager secret (lambda/handler.py)",
}


def _refuse_unknown_variables(environ: Mapping[str, str]) -> None:
    """A ``TRADEPIPE_<SECTION>_<KEY>`` variable whose section exists but whose key does not
    (a typo, or a key renamed since the environment file was written) is an error, not
    silently ignored: it would leave the key at its default (rule 4)."""
    known = {env_name(section, key) for section, keys in SECTIONS.items() for key in keys}
    prefixes = tuple(f"{ENV_PREFIX}{section.upper()}_" for section in SECTIONS)
    unknown = sorted(
        name
        for name in environ
        if name.startswith(prefixes) and name not in known and name not in READ_ELSEWHERE
    )
    if unknown:
        raise ConfigError(
            f"unknown variable(s) {', '.join(unknown)}: no such key "
            "(every key and its variable: docs/configuration.md)"
        )


def redact(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host``, anywhere in ``text``.

    Up to the last ``@`` of the word: a password holding a raw ``@`` or ``/`` (not written
    ``%40``/``%2F``, so rejected) is hidden whole; at worst more than the password is."""
    return _USERINFO.sub(r"\1***@", text)


_USERINFO = re.compile(r"(://[^/:@\s]*:)\S*@")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


# section -> key -> annotated type, in declaration order
SECTIONS: dict[str, dict[str, Any]] = {
    name: _hints(section) for name, section in _hints(Settings).items()
}


def _place_state(tree: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    """Under systemd, the producer's state file and the sink's spool go in
    ``$STATE_DIRECTORY``, unless their own variable is set (rule 3)."""
    state_dir = _state_directory(environ)
    if state_dir is None:
        return
    if env_name("feed", "state_path") not in environ:
        tree["feed"]["state_path"] = str(Path(state_dir) / STATE_FILE_NAME)
    if env_name("sink", "spool_dir") not in environ:
        tree["sink"]["spool_dir"] = str(Path(state_dir) / SPOOL_DIR_NAME)


def _state_directory(environ: Mapping[str, str]) -> str | None:
    """systemd's ``$STATE_DIRECTORY`` (a colon-separated list when the unit names several:
    the first is ours); ``None`` when unset or empty."""
    first = environ.get("STATE_DIRECTORY", "").split(":")[0].strip()
    if not first:
        return None
    if not Path(first).is_absolute():
        raise ConfigError(f"STATE_DIRECTORY: {first!r} is not an absolute path")
    return first


def _base(hint: Any) -> Any:
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _tidy(value: Any, hint: Any) -> Any:
    """Lists: a string is comma-separated, items stripped, empty ones dropped; choices are
    case-insensitive."""
    base = _base(hint)
    if typing.get_origin(base) is list:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
    if typing.get_origin(base) is Literal and isinstance(value, str):
        return value.strip().lower()
    return value


def _from_env(text: str, hint: Any, where: str) -> Any:
    value = _tidy(text.strip(), hint)
    try:
        return msgspec.convert(value, hint, strict=False)
    except msgspec.ValidationError:
        raise ConfigError(f"{where}: expected {describe(hint)}, got {redact(repr(text))}") from None


_AT = re.compile(r" - at `\$\.(\w+)\.(\w+)")


def _convert(tree: dict[str, Any], env_names: Mapping[tuple[str, str], str]) -> Settings:
    try:
        return msgspec.convert(tree, Settings)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = _AT.search(message)
        if at is None or at[1] not in SECTIONS or at[2] not in SECTIONS[at[1]]:
            raise ConfigError(redact(message)) from None
        section, key = at[1], at[2]
        where = f"{section}.{key}"
        if (section, key) in env_names:
            where = f"{env_names[section, key]} ({where})"
        got = redact(repr(tree[section][key]))
        raise ConfigError(
            f"{where}: expected {describe(SECTIONS[section][key])}, got {got}"
        ) from None


def describe(hint: Any) -> str:
    """What a key accepts, in words: ``number >= 0``, ``"s3" | "folder"``, ``HOST:PORT``."""
    base = _base(hint)
    if typing.get_origin(base) is Literal:  # in the order written, not msgspec's sorted one
        return " | ".join(f'"{v}"' for v in typing.get_args(base))
    return _describe(mi.type_info(hint))


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        title = (t.extra_json_schema or {}).get("title")
        return str(title) if title else _describe(t.type)
    if isinstance(t, mi.IntType | mi.FloatType):
        bounds = [
            f"{op} {_number(v)}"
            for op, v in ((">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le))
            if v is not None
        ]
        return " ".join(
            ["integer" if isinstance(t, mi.IntType) else "number", " and ".join(bounds)]
        )
    if isinstance(t, mi.StrType):
        return f"text matching {t.pattern}" if t.pattern else "text"
    if isinstance(t, mi.LiteralType):
        return " | ".join(f'"{v}"' for v in t.values)
    if isinstance(t, mi.ListType):
        size = ""
        if t.min_length is not None or t.max_length is not None:
            size = f", {t.min_length or 0} to {t.max_length or 'any number of'} items"
        return f"comma-separated list of {_describe(t.item_type)}{size}"
    return type(t).__name__.removesuffix("Type").lower()


def _number(value: float) -> str:
    return f"{value:g}"
