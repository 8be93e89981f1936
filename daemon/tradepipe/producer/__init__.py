"""``tradepipe produce``: Binance aggTrades over WebSocket -> Kafka, with no gaps.

Layout (the pure parts first):
:mod:`.records` (what is published), :mod:`.sequencer` (order, de-dup, gaps; pure),
:mod:`.outbox` (the bounded buffer), :mod:`.backoff` (reconnect pacing; pure),
:mod:`.intake` (message -> validated record -> sequencer -> outbox), :mod:`.quarantine`,
:mod:`.metrics`, :mod:`.feed` (WebSocket connections, rollover), :mod:`.rest` and
:mod:`.backfill` (REST gap filling), :mod:`.output` (the :class:`TradeOutput` interface),
:mod:`.kafka` (the Kafka output), :mod:`.publisher` (outbox -> output), :mod:`.service` (lifecycle).
"""

from tradepipe.producer.intake import Intake
from tradepipe.producer.kafka import KafkaOutput, TopicMismatch, ensure_topic
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.output import OutputUnavailable, TradeOutput
from tradepipe.producer.records import Record
from tradepipe.producer.sequencer import Sequencer
from tradepipe.producer.service import Options, Producer, serve

__all__ = [
    "Intake",
    "KafkaOutput",
    "Options",
    "Outbox",
    "OutputUnavailable",
    "Producer",
    "ProducerMetrics",
    "Record",
    "Sequencer",
    "TopicMismatch",
    "TradeOutput",
    "ensure_topic",
    "serve",
]
