"""Smoke: the S3 server of scripts/stack (moto) works with aioboto3 and a custom endpoint_url."""

from __future__ import annotations

import gzip
import uuid

import aioboto3
import pytest

pytestmark = pytest.mark.s3


async def test_put_get_list_delete_object(s3_client_kwargs: dict[str, str], s3_bucket: str) -> None:
    key = f"smoke/symbol=BTCUSDT/date=2026-11-24/hour=06/minute=48/{uuid.uuid4().hex}.ndjson.gz"
    body = gzip.compress(b'{"e":"aggTrade","s":"BTCUSDT","a":1}\n')
    async with aioboto3.Session().client("s3", **s3_client_kwargs) as s3:
        await s3.put_object(Bucket=s3_bucket, Key=key, Body=body)
        obj = await s3.get_object(Bucket=s3_bucket, Key=key)
        async with obj["Body"] as stream:
            assert await stream.read() == body
        listed = await s3.list_objects_v2(Bucket=s3_bucket, Prefix="smoke/symbol=BTCUSDT/")
        assert key in [o["Key"] for o in listed.get("Contents", [])]
        await s3.delete_object(Bucket=s3_bucket, Key=key)
