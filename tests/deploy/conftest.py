"""Fixtures for the deployment's tests: the deploy tools' own virtualenv (``make deploy-venv``:
awscli, cfn-lint, checkov, shellcheck from requirements/deploy.txt, which does not fit the test
lock) and clients of the local AWS (moto's server, the local stack's S3 endpoint, which serves
every service moto has)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.conftest import unavailable
from tests.deploy.template import ROOT

DEPLOY_BIN = ROOT / ".venv-deploy" / "bin"


@pytest.fixture(scope="session")
def deploy_bin() -> Path:
    """.venv-deploy/bin, installed (or found up to date) by ``make deploy-venv``."""
    res = subprocess.run(["make", "-s", "deploy-venv"], cwd=ROOT, capture_output=True,
                         text=True, timeout=900, check=False)  # fmt: skip
    if res.returncode != 0:
        unavailable(f"make deploy-venv failed (needs PyPI or pip's cache):\n{res.stderr[-2000:]}")
    return DEPLOY_BIN


@pytest.fixture(scope="session")
def aws(s3_client_kwargs: dict[str, str]) -> Callable[[str], Any]:
    """``aws("lambda")``: a boto3 client of that service on the local AWS."""

    def client(service: str) -> Any:
        return boto3.client(service, **s3_client_kwargs)  # type: ignore[call-overload]

    return client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first test to use ``deploy_bin`` may install .venv-deploy from PyPI (about 100
    distributions): give those tests more than the default 300 s."""
    for item in items:
        if "deploy_bin" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(900))
