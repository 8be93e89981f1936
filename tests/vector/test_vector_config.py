"""Static checks of vector/vector.toml (Vector itself cannot be installed here).

The file is parsed as TOML after Vector's environment interpolation (re-implemented below for
the ``${VAR}`` / ``${VAR:-default}`` / ``$VAR`` forms), the wiring and the options that decide
correctness are checked, and the S3 key template is rendered for a sample event the way the
aws_s3 sink does (``{{ field }}`` from the event, strftime from the event timestamp in UTC) and
must be accepted by the Lambda's key parser -- in both layouts: the default template (per
minute) and the per-symbol one the file's header gives for ``TRADEPIPE_VECTOR_KEY_PREFIX``.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.conftest import unavailable

from tradepipe.core import MINUTE_MS, Layout, parse_event, parse_key

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "vector" / "vector.toml"
SAMPLE = (
    ROOT.parent
    / "shared"
    / "data"
    / "binance"
    / "cryptofeed-BINANCE-ee25be.btcusdt.aggTrade.ndjson"
)
# What the kafka source adds to each decoded event (Vector docs: sources/kafka, output fields).
SOURCE_FIELDS = {
    "timestamp",
    "topic",
    "partition",
    "offset",
    "message_key",
    "headers",
    "source_type",
}
_ENV_RE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_FIELD_RE = re.compile(r"\{\{\s*(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_PER_SYMBOL_RE = re.compile(r"^#\s+per_symbol key_prefix: (.+?)\s*$", re.MULTILINE)


def per_symbol_template() -> str:
    """The per-symbol ``key_prefix`` the header of vector.toml tells operators to set."""
    found = _PER_SYMBOL_RE.findall(CONFIG.read_text())
    assert len(found) == 1, "vector.toml's header must state the per_symbol template once"
    template: str = found[0]
    return template


def sink_of(environ: dict[str, str]) -> dict[str, Any]:
    env = {"TRADEPIPE_S3_BUCKET": "tradepipe-test", **environ}
    sink: dict[str, Any] = tomllib.loads(interpolate(CONFIG.read_text(), env))["sinks"]["trades_s3"]
    return sink


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Vector's config interpolation: unset without default is an error (as in Vector)."""

    def sub(match: re.Match[str]) -> str:
        name = match["name"] or match["bare"]
        if name in environ:
            return environ[name]
        if match["default"] is not None:
            return match["default"]
        raise KeyError(f"environment variable {name} is not set and has no default")

    return _ENV_RE.sub(sub, text)


def render_template(template: str, event: dict[str, Any], timestamp: dt.datetime) -> str:
    """The aws_s3 ``key_prefix`` rendering: ``{{ field }}`` from the event, then strftime."""

    def field(match: re.Match[str]) -> str:
        value: Any = event
        for part in match["field"].split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(f"event has no field {match['field']!r}: Vector would drop it")
            value = value[part]
        return str(value)

    return timestamp.strftime(_FIELD_RE.sub(field, template))


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    env = {"TRADEPIPE_S3_BUCKET": "tradepipe-test"}
    return tomllib.loads(interpolate(CONFIG.read_text(), env))


@pytest.fixture(scope="module")
def sink(config: dict[str, Any]) -> dict[str, Any]:
    sinks = config["sinks"]
    assert list(sinks) == ["trades_s3"]
    s: dict[str, Any] = sinks["trades_s3"]
    return s


def test_bucket_is_required() -> None:
    with pytest.raises(KeyError, match="TRADEPIPE_S3_BUCKET"):
        interpolate(CONFIG.read_text(), {})


def test_no_interpolation_inside_comments() -> None:
    for number, line in enumerate(CONFIG.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            assert not _ENV_RE.search(line), f"line {number}: Vector would interpolate {line!r}"


def test_environment_overrides_defaults() -> None:
    env = {
        "TRADEPIPE_S3_BUCKET": "b",
        "TRADEPIPE_KAFKA_TOPIC": "other",
        "TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS": "10.0.0.1:9092",
        "TRADEPIPE_S3_ENDPOINT_URL": "http://127.0.0.1:35555",
    }
    cfg = tomllib.loads(interpolate(CONFIG.read_text(), env))
    assert cfg["sources"]["aggtrades"]["topics"] == ["other"]
    assert cfg["sources"]["aggtrades"]["bootstrap_servers"] == "10.0.0.1:9092"
    assert cfg["sinks"]["trades_s3"]["endpoint"] == "http://127.0.0.1:35555"
    assert cfg["sinks"]["trades_s3"]["bucket"] == "b"


def test_kafka_source(config: dict[str, Any]) -> None:
    sources = config["sources"]
    assert list(sources) == ["aggtrades"]
    src = sources["aggtrades"]
    assert src["type"] == "kafka"
    assert src["topics"] == ["aggtrades"]  # the default of kafka.topic
    assert src["bootstrap_servers"] == "127.0.0.1:9092"
    assert src["group_id"]
    assert src["auto_offset_reset"] in ("earliest", "smallest", "beginning")
    assert src["decoding"]["codec"] == "json"
    assert src["key_field"] == "message_key"
    # acknowledgements on the source are deprecated and have no effect: they belong on the sink
    assert "acknowledgements" not in src


def test_sink_wiring_and_format(config: dict[str, Any], sink: dict[str, Any]) -> None:
    assert sink["type"] == "aws_s3"
    assert sink["inputs"] == list(config["sources"])
    assert sink["bucket"] == "tradepipe-test"
    assert sink["endpoint"].startswith(("http://", "https://"))
    assert sink["compression"] == "gzip"
    assert sink["encoding"]["codec"] == "json"
    assert sink["framing"]["method"] == "newline_delimited"  # NDJSON, not a JSON array
    assert set(sink["encoding"]["except_fields"]) == SOURCE_FIELDS
    assert sink["filename_extension"] == "ndjson.gz"
    assert sink["filename_append_uuid"] is True  # names must be unique: no overwrites


def test_delivery_guarantees(config: dict[str, Any], sink: dict[str, Any]) -> None:
    assert sink["batch"]["timeout_secs"] == 60
    assert sink["acknowledgements"]["enabled"] is True
    assert sink["buffer"]["type"] == "disk"
    assert sink["buffer"]["max_size"] >= 268435488  # Vector's minimum disk buffer size
    assert sink["buffer"]["when_full"] == "block"  # never drop
    assert config["data_dir"]
    assert config["timezone"] == "UTC"


def test_offsets_are_committed_only_once_events_are_in_the_disk_buffer(
    config: dict[str, Any],
) -> None:
    """The buffer/acknowledgement chain (vector/vector.toml's comments): every sink fed by the
    kafka source, directly (no transform that could drop or fan out events on the way),
    acknowledges end to end, into a single disk stage that blocks when full."""
    sources = {n for n, s in config["sources"].items() if s["type"] == "kafka"}
    assert sources
    assert "transforms" not in config
    fed = {n: s for n, s in config["sinks"].items() if set(s["inputs"]) & sources}
    assert set(fed) == set(config["sinks"])
    for name, sink in fed.items():
        assert set(sink["inputs"]) <= sources, name
        assert sink["acknowledgements"] == {"enabled": True}, name
        buffer = sink["buffer"]
        assert isinstance(buffer, dict), f"{name}: one buffer stage, not {buffer!r}"
        assert buffer["type"] == "disk", name
        assert buffer["when_full"] == "block", name
        assert buffer["max_size"] >= 268435488, name
    # a global default cannot turn the sink's off (sink-level wins), nor may it say otherwise
    assert config.get("acknowledgements", {"enabled": True}) == {"enabled": True}
    for name in sources:
        src = config["sources"][name]
        # the source commits acknowledged offsets on its own schedule: bounded re-delivery
        assert 0 < src["commit_interval_ms"] <= 5000, name
        assert "acknowledgements" not in src  # deprecated on sources (test_kafka_source)
    assert config["data_dir"].startswith("/")  # the disk buffer survives restarts there


def _sample_events(limit: int = 50) -> list[dict[str, Any]]:
    if not SAMPLE.exists():
        unavailable(f"recorded sample {SAMPLE} is absent (see ../shared/data/README.md)")
    lines = SAMPLE.read_bytes().splitlines()[:limit]
    return [msgspec.json.decode(line) for line in lines]


@pytest.mark.parametrize("layout", list(Layout))
def test_key_prefix_renders_trade_minute_and_parses(layout: Layout) -> None:
    per_symbol = layout is Layout.PER_SYMBOL  # else the default template
    sink = sink_of({"TRADEPIPE_VECTOR_KEY_PREFIX": per_symbol_template()} if per_symbol else {})
    template = sink["key_prefix"]
    # under trades/: the Lambda's S3 notification filter (deploy/) is prefix trades/
    assert template.startswith("trades/")
    for raw in _sample_events():
        trade = parse_event(raw)
        # What the kafka source makes of a record: the decoded JSON plus its fields; `timestamp`
        # is the Kafka message timestamp, which the producer sets to the trade time T.
        event = {
            **raw,
            "message_key": trade.symbol,
            "topic": "aggtrades",
            "partition": 0,
            "offset": 7,
            "headers": {},
            "source_type": "kafka",
        }
        stamp = dt.datetime.fromtimestamp(trade.time_ms / 1000, tz=dt.UTC)
        prefix = render_template(template, event, stamp)
        # Vector appends <filename_time_format>-<uuid v4>.<filename_extension> (processing time)
        written = int(dt.datetime.now(dt.UTC).timestamp())
        uuid = "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"
        key = f"{prefix}{written}-{uuid}.{sink['filename_extension']}"
        parsed = parse_key(key)
        assert parsed.prefix == "trades"
        assert parsed.layout is layout
        assert parsed.symbol == (trade.symbol if layout is Layout.PER_SYMBOL else None)
        assert parsed.minute_ms == trade.time_ms - trade.time_ms % MINUTE_MS
        assert parsed.admits(trade.symbol, parsed.minute_ms)
        assert parsed.name.endswith(".ndjson.gz")
        # what the encoder writes back is the aggTrade object again
        line = {k: v for k, v in event.items() if k not in sink["encoding"]["except_fields"]}
        assert line == raw
        assert parse_event(msgspec.json.encode(line)) == trade


def test_per_symbol_key_prefix_needs_the_kafka_key() -> None:
    raw = _sample_events(1)[0]
    sink = sink_of({"TRADEPIPE_VECTOR_KEY_PREFIX": per_symbol_template()})
    with pytest.raises(KeyError, match="message_key"):
        render_template(sink["key_prefix"], raw, dt.datetime.now(dt.UTC))


def test_per_minute_is_the_default_and_the_per_symbol_template_is_documented_alike() -> None:
    """The default is per_minute (as sink.layout's), and the per-symbol template operators copy
    is the same in vector.toml's header, vector/README.md and docs/scale-layout.md."""
    assert "{{" not in sink_of({})["key_prefix"]  # no symbol in a per-minute key
    template = per_symbol_template()
    assert template.startswith("trades/symbol={{ message_key }}/")
    for doc in (ROOT / "vector" / "README.md", ROOT / "docs" / "scale-layout.md"):
        assert f"TRADEPIPE_VECTOR_KEY_PREFIX={template}" in doc.read_text(), doc
