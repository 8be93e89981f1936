"""Where rejected messages go: one JSON line each, so nothing bad is lost or fatal.

Each line is ``{"at": <epoch ms>, "reason": ..., "error": ..., "raw": <the message text>}``.
The file is capped at ``max_bytes`` (a flood of garbage must not fill the disk); past the cap
messages are still counted and logged, just not written.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import structlog

log = structlog.get_logger(__name__)


class Quarantine:
    def __init__(self, path: str | Path, max_bytes: int = 100 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.written = 0
        self._full_logged = False

    def add(self, reason: str, error: str, raw: bytes | str) -> bool:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = msgspec.json.encode(
            {"at": int(time.time() * 1000), "reason": reason, "error": error, "raw": text}
        )
        try:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size + len(line) + 1 > self.max_bytes:
                if not self._full_logged:
                    log.error("quarantine_full", path=str(self.path), max_bytes=self.max_bytes)
                    self._full_logged = True
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as out:
                out.write(line + b"\n")
        except OSError as exc:
            log.error("quarantine_write_failed", path=str(self.path), error=str(exc))
            return False
        self.written += 1
        return True
