"""Where the sink's objects go: S3 (aioboto3) or a local folder with the same key layout.

Both take a full key (``trades/symbol=.../minute=MM/<name>.ndjson.gz``) and the gzip body, and
overwrite an existing object of that key: a re-delivered object has the same key and bytes.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# What S3 answers on the same object; Vector's aws_s3 sink sets the same headers for gzip.
CONTENT_TYPE = "application/x-ndjson"
CONTENT_ENCODING = "gzip"


class ObjectWriter(Protocol):
    async def put(self, key: str, body: bytes) -> None: ...


def retryable(exc: Exception) -> bool:
    """Worth retrying: the network, timeouts, S3 5xx/throttling. Not: access denied, no bucket."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        throttled = code in {"SlowDown", "RequestTimeout", "Throttling"}
        return status >= 500 or status == 429 or throttled
    return isinstance(exc, BotoCoreError | OSError | asyncio.TimeoutError)


class S3Writer:
    """``PutObject`` into ``bucket``; use :meth:`open` to get one with a live client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client, self.bucket = client, bucket

    @classmethod
    @asynccontextmanager
    async def open(
        cls, bucket: str, endpoint_url: str = "", region: str = "us-east-1"
    ) -> AsyncIterator[S3Writer]:
        # botocore retries once itself; the sink's own retry loop (visible in metrics) does
        # the rest, so an outage shows up as tradepipe_sink_put_retries_total.
        config = Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        session = aioboto3.Session()
        async with session.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=config
        ) as client:
            yield cls(client, bucket)

    async def put(self, key: str, body: bytes) -> None:
        await self._client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=CONTENT_TYPE,
            ContentEncoding=CONTENT_ENCODING,
        )


class LocalWriter:
    """Objects as files under ``root`` (local mode); written atomically (temp file + rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    async def put(self, key: str, body: bytes) -> None:
        await asyncio.to_thread(self._put, key, body)

    def _put(self, key: str, body: bytes) -> None:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} escapes {self.root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
