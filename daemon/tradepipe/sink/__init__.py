"""The built-in Kafka -> S3 sink: a pure per-minute batcher and its aiokafka/aioboto3 shell.

- :mod:`.batcher`: records of a partition -> per-(symbol, minute) objects, and when to write
  and commit them (pure; local mode reuses it);
- :mod:`.checkpoint`: the batcher's state saved after each put, so a restart rebuilds the
  same objects;
- :mod:`.spool`: the durable spool (SQLite, WAL) between the Kafka reader and the writer;
- :mod:`.objects`: the S3 and local-folder object writers;
- :mod:`.consumer`: the ``Consumer`` protocol (the calls the sink makes of aiokafka's consumer
  and of local mode's in-process broker) and the ``Source`` that joins it;
- :mod:`.kafka`: the Kafka consumer group source;
- :mod:`.service`: :func:`serve`, the service behind ``tradepipe sink`` and ``tradepipe run``.
"""

from tradepipe.sink.batcher import Batch, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import Checkpoint, CheckpointError
from tradepipe.sink.consumer import Consumer, Message, Source
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer
from tradepipe.sink.service import Options, Sink, open_writer, serve

__all__ = [
    "Batch",
    "Checkpoint",
    "CheckpointError",
    "Consumer",
    "Flush",
    "LocalWriter",
    "Message",
    "ObjectWriter",
    "Options",
    "PartitionBatcher",
    "S3Writer",
    "Sink",
    "Source",
    "open_writer",
    "serve",
]
