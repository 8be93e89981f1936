"""Settings: every key validated by its msgspec constraints, one line naming the key (and the
variable), the layers in order, unknown sections and keys refused."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import aiokafka.codec
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from tradepipe.config import (
    RUN_DEFAULTS,
    SECTIONS,
    ConfigError,
    Settings,
    describe,
    env_name,
    require_objects_target,
)
from tradepipe.observability.logs import LEVELS

# (key, a refused value as the environment writes it, the same value in TOML)
REFUSED = [
    ("kafka.compression_type", "lz4", '"lz4"'),
    ("kafka.compression_type", "brotli", '"brotli"'),
    ("kafka.linger_ms", "-1", "-1"),
    ("kafka.max_batch_size", "0", "0"),
    ("kafka.retention_ms", "-2", "-2"),
    ("kafka.bootstrap_servers", "kafka", '"kafka"'),
    ("kafka.bootstrap_servers", "a:1,,b:2", '"a:1,,b:2"'),
    ("kafka.topic", "a topic", '"a topic"'),
    ("kafka.group_id", " ", '" "'),
    ("sink.max_object_trades", "0", "0"),
    ("sink.grace_seconds", "-1", "-1"),
    ("sink.objects", "ftp", '"ftp"'),
    ("sink.objects_dir", "", '""'),
    ("sink.metrics_listen", "127.0.0.1:65536", '"127.0.0.1:65536"'),
    ("metrics.listen", "9108", '"9108"'),
    ("dashboard.listen", "127.0.0.1:http", '"127.0.0.1:http"'),
    ("log.level", "verbose", '"verbose"'),
    ("db.url", "postgres://h/db", '"postgres://h/db"'),
    ("feed.ws_url", "http://stream.binance.com", '"http://stream.binance.com"'),
    ("feed.rest_url", "wss://api.binance.com", '"wss://api.binance.com"'),
    ("feed.symbols", "btc-usdt", '["btc-usdt"]'),
    ("feed.symbols", ",", "[]"),
    ("feed.rest_weight_per_minute", "6001", "6001"),
    ("feed.rollover_seconds", "0", "0"),
    ("feed.max_held", "many", '"many"'),
    ("s3.endpoint_url", "ftp://s3.local", '"ftp://s3.local"'),
    ("s3.bucket", "Not_A_Bucket", '"Not_A_Bucket"'),
    ("local.broker", "rabbitmq", '"rabbitmq"'),
    ("local.broker_max_messages", "-5", "-5"),
]


@pytest.mark.parametrize(("key", "env_value", "toml_value"), REFUSED)
def test_a_refused_value_names_the_key_and_the_variable(
    key: str, env_value: str, toml_value: str, tmp_path: Path
) -> None:
    section, name = key.split(".")
    hint = SECTIONS[section][name]
    var = env_name(section, name)
    with pytest.raises(ConfigError) as from_env:
        Settings.load(None, {var: env_value})
    assert str(from_env.value) == f"{var} ({key}): expected {describe(hint)}, got {env_value!r}"
    config = tmp_path / "c.toml"
    config.write_text(f"[{section}]\n{name} = {toml_value}\n")
    with pytest.raises(ConfigError) as from_file:
        Settings.load(config, {})
    assert str(from_file.value).startswith(f"{key}: expected {describe(hint)}, got ")
    with pytest.raises(ConfigError, match=f"^{key}: expected "):
        Settings().replace(**{section: {name: tomllib.loads(f"v = {toml_value}")["v"]}})
    assert "\n" not in str(from_env.value) + str(from_file.value)  # one line


def test_the_message_of_the_issue(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[sink]\ngrace_seconds = -1\n")
    with pytest.raises(ConfigError) as info:
        Settings.load(config, {})
    assert str(info.value) == "sink.grace_seconds: expected number >= 0, got -1"


def test_grace_zero_and_the_edges_are_accepted() -> None:
    s = Settings.load(None, {
        "TRADEPIPE_SINK_GRACE_SECONDS": "0", "TRADEPIPE_KAFKA_LINGER_MS": "0",
        "TRADEPIPE_KAFKA_RETENTION_MS": "-1", "TRADEPIPE_FEED_REST_WEIGHT_PER_MINUTE": "6000",
        "TRADEPIPE_METRICS_LISTEN": "127.0.0.1:0", "TRADEPIPE_DASHBOARD_LISTEN": "[::1]:65535",
        "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": "k1.internal:9092,10.0.0.2:9093",
        "TRADEPIPE_KAFKA_COMPRESSION_TYPE": "GZIP", "TRADEPIPE_LOG_LEVEL": "INFO",
        "TRADEPIPE_DB_URL": "mariadb://u:p@h:3306/db",
    })  # fmt: skip
    assert (s.sink.grace_seconds, s.kafka.linger_ms, s.kafka.retention_ms) == (0.0, 0, -1)
    assert (s.kafka.compression_type, s.log.level) == ("gzip", "info")


def test_compression_choices_are_exactly_the_codecs_aiokafka_can_use_here() -> None:
    usable = {"none"} | {
        codec for codec in ("gzip", "snappy", "lz4", "zstd")
        if getattr(aiokafka.codec, f"has_{codec}")()
    }  # fmt: skip
    hint = SECTIONS["kafka"]["compression_type"]
    choices = set(msgspec.inspect.type_info(hint).type.values)  # type: ignore[attr-defined]
    assert choices == usable


async def test_every_compression_choice_builds_a_producer() -> None:
    for choice in ("none", "gzip"):
        s = Settings.load(None, {"TRADEPIPE_KAFKA_COMPRESSION_TYPE": choice}).kafka
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            compression_type=None if s.compression_type == "none" else s.compression_type,
        )
        await producer.stop()  # never started: the constructor refuses a codec it cannot load
    with pytest.raises((ValueError, RuntimeError)):  # and it does refuse the others here
        AIOKafkaProducer(compression_type="lz4")


def test_log_levels_are_the_ones_logging_accepts() -> None:
    choices = msgspec.inspect.type_info(SECTIONS["log"]["level"]).type.values  # type: ignore[attr-defined]
    assert set(choices) == set(LEVELS)


def test_lists_symbols_and_urls_are_tidied(tmp_path: Path) -> None:
    s = Settings.load(None, {
        "TRADEPIPE_FEED_SYMBOLS": " BTCUSDT , ethusdt ,", "TRADEPIPE_FEED_REST_URL": "http://h:1/",
    })  # fmt: skip
    assert (s.feed.symbols, s.feed.rest_url) == (["btcusdt", "ethusdt"], "http://h:1")
    config = tmp_path / "c.toml"
    config.write_text('[feed]\nsymbols = "dotusdt,SOLUSDT"\n')
    assert Settings.load(config, {}).feed.symbols == ["dotusdt", "solusdt"]
    with pytest.raises(ConfigError, match=r"^TRADEPIPE_FEED_SYMBOLS \(feed\.symbols\): "):
        Settings.load(None, {"TRADEPIPE_FEED_SYMBOLS": ",".join(["btcusdt"] * 10_001)})


def test_toml_types_are_strict_numbers_widen(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[sink]\ngrace_seconds = 2\n")
    assert Settings.load(config, {}).sink.grace_seconds == 2.0
    for text in ('[kafka]\nlinger_ms = "5"\n', "[kafka]\nlinger_ms = true\n",
                 "[kafka]\nlinger_ms = 1.5\n"):  # fmt: skip
        config.write_text(text)
        with pytest.raises(ConfigError, match=r"^kafka\.linger_ms: expected integer >= 0, got "):
            Settings.load(config, {})


def test_unknown_sections_and_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    for text, message in [
        ("[kafak]\ntopic = 'x'\n", r"^unknown config section\(s\): kafak$"),
        ("[local]\nobjects_dir = 'x'\n", r"^unknown key\(s\) in \[local\]: objects_dir$"),
        ("[local]\ngrace_seconds = 1\n", r"^unknown key\(s\) in \[local\]: grace_seconds$"),
        ("[sink]\nlocal_dir = 'x'\n", r"^unknown key\(s\) in \[sink\]: local_dir$"),
        ("feed = 1\n", r"^\[feed\] must be a table$"),
    ]:
        config.write_text(text)
        with pytest.raises(ConfigError, match=message):
            Settings.load(config, {})
    with pytest.raises(ConfigError, match=r"^unknown key\(s\) in \[sink\]: local_dir$"):
        Settings().replace(sink={"local_dir": "x"})
    with pytest.raises(ConfigError, match=r"^cannot read config file"):
        Settings.load(tmp_path / "missing.toml", {})
    config.write_text("[feed\n")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        Settings.load(config, {})


def test_layers_defaults_then_command_then_file_then_environment(tmp_path: Path) -> None:
    assert Settings.load(None, {}).sink.grace_seconds == 5.0
    assert Settings.load(None, {}, defaults=RUN_DEFAULTS).sink.grace_seconds == 1.0
    config = tmp_path / "c.toml"
    config.write_text("[sink]\ngrace_seconds = 2.5\n")
    assert Settings.load(config, {}, defaults=RUN_DEFAULTS).sink.grace_seconds == 2.5
    env = {"TRADEPIPE_SINK_GRACE_SECONDS": "3"}
    assert Settings.load(config, env, defaults=RUN_DEFAULTS).sink.grace_seconds == 3.0
    # every RUN_DEFAULTS value is a valid value of a real key
    for section, values in RUN_DEFAULTS.items():
        assert set(values) <= set(SECTIONS[section])
        assert Settings().replace(**{section: values}) is not None


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.sink.grace_seconds = 1.0  # type: ignore[misc]
    assert s.replace(sink={"grace_seconds": 1.0}).sink.grace_seconds == 1.0
    assert s.sink.grace_seconds == 5.0


def test_objects_in_s3_need_a_bucket() -> None:
    require_objects_target(Settings.load(None, {"TRADEPIPE_S3_BUCKET": "b-1"}))
    require_objects_target(Settings.load(None, {"TRADEPIPE_SINK_OBJECTS": "folder"}))
    with pytest.raises(ConfigError, match=r"^s3\.bucket \(TRADEPIPE_S3_BUCKET\) is required"):
        require_objects_target(Settings.load(None, {}))
    done = subprocess.run(
        [sys.executable, "-m", "tradepipe.cli", "sink"], capture_output=True, text=True,
        timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("TRADEPIPE_")},
    )  # fmt: skip
    assert done.returncode == 2
    assert 's3.bucket (TRADEPIPE_S3_BUCKET) is required when sink.objects = "s3"' in done.stderr


def test_a_variable_of_a_known_section_that_names_no_key_is_refused() -> None:
    """An environment file written for a renamed key (or with a typo) must not start the
    service on the default silently."""
    renamed = ("TRADEPIPE_SINK_LOCAL_DIR", "TRADEPIPE_LOCAL_OBJECTS_DIR", "TRADEPIPE_FEED_SYMBOL")
    for name in renamed:
        with pytest.raises(ConfigError, match=rf"^unknown variable\(s\) {name}: no such key"):
            Settings.load(None, {name: "x"})
    # read elsewhere on purpose, or of no section of ours: not looked at
    settings = Settings.load(
        None,
        {
            "TRADEPIPE_DB_SECRET_ID": "arn:aws:secretsmanager:x",
            "TRADEPIPE_VECTOR_GROUP_ID": "g",
            "TRADEPIPE_TEST_KAFKA": "127.0.0.1:1",
            "TRADEPIPE_SINK_OBJECTS_DIR": "./objects",
        },
    )
    assert settings.sink.objects_dir == "./objects"


def test_state_directory_decides_where_the_sinks_spool_lives() -> None:
    """Like the producer's state file (tests/producer/test_state.py): under systemd the spool
    goes in the unit's StateDirectory unless its own variable says otherwise."""
    assert Settings.load(None, {}).sink.spool_dir == "./data/spool"
    systemd = Settings.load(None, {"STATE_DIRECTORY": "/var/lib/tradepipe-sink"})
    assert systemd.sink.spool_dir == "/var/lib/tradepipe-sink/spool"
    explicit = Settings.load(
        None, {"STATE_DIRECTORY": "/var/lib/tradepipe-sink", "TRADEPIPE_SINK_SPOOL_DIR": "/srv/s"}
    )
    assert explicit.sink.spool_dir == "/srv/s"
    assert (
        Settings.load(None, {"TRADEPIPE_SINK_SPOOL_MAX_BYTES": "1048576"}).sink.spool_max_bytes
        == 1048576
    )
    with pytest.raises(ConfigError, match="spool_max_bytes"):
        Settings.load(None, {"TRADEPIPE_SINK_SPOOL_MAX_BYTES": "0"})
