"""``tradepipe sink`` that SIGKILLs itself right after its N-th append to the spool, i.e.
between the spool's commit and the Kafka offset commit that follows it
(``CRASH_AFTER_APPENDS=N``). Test use only."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from tradepipe import cli
from tradepipe.sink import spool

LIMIT = int(os.environ["CRASH_AFTER_APPENDS"])
_original = spool.Spool.append
_done = 0


async def _append_then_die(
    self: spool.Spool, topic: str, partition: int, entries: Sequence[spool.Entry]
) -> int:
    global _done
    stored = await _original(self, topic, partition, entries)
    _done += 1
    if _done >= LIMIT:
        os.kill(os.getpid(), signal.SIGKILL)
    return stored


spool.Spool.append = _append_then_die  # type: ignore[method-assign]
sys.exit(cli.main(["sink"]))
