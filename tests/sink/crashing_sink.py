"""``tradepipe sink`` that SIGKILLs itself right after its N-th successful object write, i.e.
between a put and the offset commit that follows it (``CRASH_AFTER_PUTS=N``). Test use only."""

from __future__ import annotations

import os
import signal
import sys

from tradepipe import cli
from tradepipe.sink import objects

LIMIT = int(os.environ["CRASH_AFTER_PUTS"])
_original = objects.S3Writer.put
_done = 0


async def _put_then_die(self: objects.S3Writer, key: str, body: bytes) -> None:
    global _done
    await _original(self, key, body)
    _done += 1
    if _done >= LIMIT:
        os.kill(os.getpid(), signal.SIGKILL)


objects.S3Writer.put = _put_then_die  # type: ignore[method-assign]
sys.exit(cli.main(["sink"]))
