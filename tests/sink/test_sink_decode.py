"""The sink's record decoding fed the fuzz strategy: every Kafka value, null included, is a
trade the rules accept or a counted, quarantined skip -- never an exception (issue 11)."""

from __future__ import annotations

import time

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.fuzzing import mutated, reference

from tradepipe.config import Settings
from tradepipe.sink.metrics import SinkMetrics
from tradepipe.sink.service import Sink

TP = TopicPartition("aggtrades", 0)


def refused(metrics: SinkMetrics) -> float:
    return sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "tradepipe_sink_malformed_records"
        for s in m.samples
        if s.name.endswith("_total")
    )


@given(value=st.one_of(st.none(), mutated()))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_value_is_a_trade_or_a_counted_skip(
    value: bytes | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    quarantine = tmp_path_factory.mktemp("q") / "q.ndjson"
    settings_ = Settings.load(None, {}).replace(sink={"quarantine_path": str(quarantine)})
    metrics = SinkMetrics()
    # _decode reads no consumer and writes no object: the Sink's I/O is not needed here
    sink = Sink(settings_, consumer=None, writer=None, metrics=metrics, spool=None)  # type: ignore[arg-type]
    record = ConsumerRecord("aggtrades", 0, 7, 0, 0, b"BTCUSDT", value, None, 7, 0, [])
    entry = sink._decode(TP, record)
    offset, symbol, time_ms, line = entry.offset, entry.symbol, entry.time_ms, entry.line
    expected = None if value is None else reference(value, now_ms=int(time.time() * 1000))
    assert offset == 7
    if expected is None:
        assert (symbol, line) == (None, b"")
        assert refused(metrics) == 1 and len(quarantine.read_bytes().splitlines()) == 1
    else:
        assert (symbol, time_ms) == (expected.symbol, expected.time_ms)
        assert b"\n" not in line and refused(metrics) == 0 and not quarantine.exists()
