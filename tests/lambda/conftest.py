"""Fixtures for the Lambda: a fresh handler module, a fresh bucket on the S3 server, and the
environment the handler reads (a migrated throwaway MariaDB database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from tests.store.helpers import load_handler, migrated


@pytest.fixture
def s3(s3_client_kwargs: dict[str, str]) -> Any:
    return boto3.client("s3", **s3_client_kwargs)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"tp-lambda-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def db(mysql_db: str) -> str:
    return migrated(mysql_db)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_client_kwargs: dict[str, str]) -> None:
    """Credentials and region for boto3 inside the handler, as the Lambda runtime sets them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_client_kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_client_kwargs["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_client_kwargs["region_name"])
    monkeypatch.setenv("TRADEPIPE_S3_ENDPOINT_URL", s3_client_kwargs["endpoint_url"])
    monkeypatch.delenv("TRADEPIPE_DB_SECRET_ID", raising=False)


@pytest.fixture
def handler(aws_env: None, db: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("TRADEPIPE_DB_URL", db)
    return load_handler()
