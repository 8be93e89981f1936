"""The built-in Kafka -> S3 sink: a pure per-minute batcher and its aiokafka/aioboto3 shell.

- :mod:`.batcher`: records of a partition -> per-(symbol, minute) objects, and when to write
  and commit them (pure; local mode reuses it);
- :mod:`.checkpoint`: the state committed with each offset, so a restart rebuilds the same
  objects;
- :mod:`.objects`: the S3 and local-folder object writers;
- :mod:`.service`: ``run()``, the consumer service behind ``tradepipe sink``.
"""

from tradepipe.sink.batcher import Batch, Flush, PartitionBatcher
from tradepipe.sink.checkpoint import Checkpoint, CheckpointError
from tradepipe.sink.objects import LocalWriter, ObjectWriter, S3Writer

__all__ = [
    "Batch",
    "Checkpoint",
    "CheckpointError",
    "Flush",
    "LocalWriter",
    "ObjectWriter",
    "PartitionBatcher",
    "S3Writer",
]
