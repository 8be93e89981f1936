"""docs/lambda.md's least-privilege policy against the AWS calls the packaged Lambda really makes.

dist/lambda.zip runs (in a fresh venv holding only boto3, as tests/lambda/test_lambda_zip.py
runs it) on a versioned and an unversioned bucket on the S3 server, reading its database URL
from Secrets Manager there; every call its boto3 clients make is recorded from botocore's
``before-parameter-build`` events. Each call must be allowed by one of the policy's statements,
and every action the policy grants must be one of those calls (or the failure destination's,
which the Lambda service makes, not the handler).
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_lambda_zip import run_zip, tagged  # tests/lambda is on sys.path (no package: a keyword)
from tests.store.helpers import (
    BTC_FILE,
    ETH_FILE,
    ROOT,
    expected,
    ndjson,
    real_trades,
    s3_event,
    stored,
)

DOCS = ROOT / "docs"

# The handler's calls, recorded in the packaged function's own process.
PROBE = r"""
import faulthandler, json, sys
faulthandler.dump_traceback_later(60, exit=True)
import boto3
boto3.setup_default_session()

def record(params, model, **_):
    print("CALL " + json.dumps({
        "service": model.service_model.service_name, "operation": model.name,
        "params": {k: v for k, v in params.items() if isinstance(v, str)},
    }), flush=True)

boto3.DEFAULT_SESSION.events.register("before-parameter-build", record)
import handler
print("RESULT " + json.dumps(handler.handler(json.load(sys.stdin), None)))
"""

# The Lambda service's own use of the execution role (the on-failure destination).
SERVICE_ACTIONS = {"sqs:SendMessage"}


def policy() -> dict[str, Any]:
    """The one JSON block under docs/lambda.md's "IAM (least privilege)" heading."""
    text = (DOCS / "lambda.md").read_text()
    section = text.split("### IAM (least privilege)", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the IAM section holds exactly one JSON policy"
    return dict(json.loads(blocks[0]))


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def resource_pattern(resource: str, secret_arn: str) -> str:
    """A policy resource as an fnmatch pattern: BUCKET is any bucket name, SECRET_ARN the
    test's secret."""
    return resource.replace("SECRET_ARN", secret_arn).replace("BUCKET", "tp-*")


def iam_request(call: dict[str, Any]) -> tuple[str, str]:
    """The IAM action and resource one recorded API call is authorised as."""
    op, params = (call["service"], call["operation"]), call["params"]
    if op == ("s3", "GetObject"):  # with VersionId S3 checks s3:GetObjectVersion instead
        action = "s3:GetObjectVersion" if "VersionId" in params else "s3:GetObject"
        return action, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
    if op == ("s3", "PutObject"):
        return "s3:PutObject", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
    if op == ("secretsmanager", "GetSecretValue"):
        return "secretsmanager:GetSecretValue", params["SecretId"]
    raise AssertionError(f"the handler makes a call this test cannot map to IAM: {call}")


def allowed(action: str, resource: str, secret_arn: str) -> list[str]:
    """The Sids of the policy's statements that allow ``action`` on ``resource``."""
    return [
        s["Sid"]
        for s in policy()["Statement"]
        if s["Effect"] == "Allow"
        and action in actions_of(s)
        and fnmatch.fnmatchcase(resource, resource_pattern(s["Resource"], secret_arn))
    ]


def test_policy_grants_named_actions_only() -> None:
    doc = policy()
    assert doc["Version"] == "2012-10-17"
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Sid"]
        assert all("*" not in a for a in actions_of(statement)), statement  # no wildcards
        if any(a.startswith("s3:") for a in actions_of(statement)):
            assert re.fullmatch(r"arn:aws:s3:::BUCKET/(trades|rejected)/\*", statement["Resource"])


def delete_everything(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def buckets(s3: Any) -> Iterator[tuple[str, str]]:
    """A versioned bucket and an unversioned one."""
    versioned, plain = (f"tp-{kind}-{uuid.uuid4().hex[:10]}" for kind in ("ver", "plain"))
    for name in (versioned, plain):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
    yield versioned, plain
    for name in (versioned, plain):
        delete_everything(s3, name)


@pytest.fixture
def secret_arn(s3_client_kwargs: dict[str, str], db: str) -> Iterator[str]:
    sm = boto3.client("secretsmanager", **s3_client_kwargs)
    arn = str(sm.create_secret(Name=f"tp-policy-{uuid.uuid4().hex}", SecretString=db)["ARN"])
    yield arn
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_packaged_lambda_on_a_versioned_bucket_calls_only_what_the_policy_allows(
    tmp_path: Path,
    s3: Any,
    buckets: tuple[str, str],
    db: str,
    secret_arn: str,
    s3_client_kwargs: dict[str, str],
) -> None:
    versioned, plain = buckets
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    key = "trades/symbol=BTCUSDT/date=2021-04-04/hour=20/minute=03/v.ndjson.gz"
    # Two versions of one key: the event of the first names its versionId, and the handler
    # must read that version, not the newer one (which holds different trades).
    first = s3.put_object(Bucket=versioned, Key=key, Body=gzip.compress(ndjson(btc) + b"bad\n"))
    s3.put_object(Bucket=versioned, Key=key, Body=gzip.compress(ndjson(btc[:10])))
    event = s3_event(versioned, [key])
    event["Records"][0]["s3"]["object"]["versionId"] = first["VersionId"]
    eth_key = "trades/symbol=ETHUSDT/date=2021-04-04/hour=20/minute=03/p.ndjson.gz"
    s3.put_object(Bucket=plain, Key=eth_key, Body=gzip.compress(ndjson(eth)))
    event["Records"] += s3_event(plain, [eth_key])["Records"]  # no versionId: plain GetObject

    out = run_zip(
        tmp_path, db, s3_client_kwargs, json.dumps(event), PROBE,
        {"TRADEPIPE_DB_URL": "", "TRADEPIPE_DB_SECRET_ID": secret_arn,
         "AWS_ENDPOINT_URL_SECRETS_MANAGER": s3_client_kwargs["endpoint_url"]},
    )  # fmt: skip
    [result] = tagged(out, "RESULT ")
    assert result == {"objects": 2, "trades": len(btc) + len(eth), "added": len(btc) + len(eth),
                      "rejected": 1}  # fmt: skip
    assert stored(db) == expected(btc + eth)  # the first version, whole
    rejected = s3.get_object(Bucket=versioned, Key="rejected/" + key.removesuffix(".gz"))
    assert rejected["Body"].read() == b"bad\n"

    calls = tagged(out, "CALL ")
    requests = [iam_request(c) for c in calls]
    assert {a for a, _ in requests} == {
        "secretsmanager:GetSecretValue", "s3:GetObjectVersion", "s3:GetObject", "s3:PutObject",
    }  # fmt: skip
    assert ("s3:GetObjectVersion", f"arn:aws:s3:::{versioned}/{key}") in requests
    for action, resource in requests:
        assert allowed(action, resource, secret_arn), f"{action} on {resource} is not granted"
    granted = {a for s in policy()["Statement"] for a in actions_of(s)}
    assert granted - {a for a, _ in requests} == SERVICE_ACTIONS  # nothing more is granted
