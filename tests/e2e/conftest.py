"""Fixtures for the end-to-end tests: the real recorded trades and a pipeline factory.

``start_pipeline(plan)`` starts replay, produce and sink as processes, a fresh topic, group,
bucket (with its notification queue) and MariaDB database, and the local Lambda
(:mod:`tests.e2e.pipeline`); everything is stopped and removed afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import unavailable

from .pipeline import Pipeline, Plan

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "binance"
# one capture span (2021-04-04 20:03:11-20:04:42 UTC): 1,227 + 506 + 177 aggTrades
REAL_FILES = [
    DATA / f"cryptofeed-BINANCE-ee25be.{s}usdt.aggTrade.ndjson" for s in ("btc", "eth", "dot")
]
REAL_SYMBOLS = ["btcusdt", "ethusdt", "dotusdt"]

StartPipeline = Callable[..., contextlib.AbstractAsyncContextManager[Pipeline]]


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    missing = [str(p) for p in REAL_FILES if not p.exists()]
    if missing:
        unavailable(f"the recorded trades are missing (../shared/data/README.md): {missing}")
    return REAL_FILES


@pytest.fixture
def start_pipeline(
    tmp_path: Path,
    kafka_bootstrap: str,
    mysql_db: str,
    s3_client_kwargs: dict[str, str],
    real_files: list[Path],
) -> StartPipeline:
    @contextlib.asynccontextmanager
    async def start(**plan: Any) -> AsyncIterator[Pipeline]:
        plan.setdefault("inputs", real_files)
        plan.setdefault("symbols", REAL_SYMBOLS)
        async with Pipeline(
            Plan(**plan), tmp_path / "pipeline",
            kafka=kafka_bootstrap, db_url=mysql_db, s3_kwargs=s3_client_kwargs,
        ) as pipeline:  # fmt: skip
            yield pipeline

    return start
