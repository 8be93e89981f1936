"""``make deploy``, the one command, against the local AWS (moto's server: AWS_ENDPOINT_URL):
it builds dist/lambda.zip and dist/host-bundle.tar.gz, creates the artifacts bucket, uploads
both under content-addressed keys and creates the stack with ``aws cloudformation deploy``
(change set, then its execution), printing each command. moto cannot update this stack (its
change-set update re-reads an SSM-typed parameter as a parameter name) nor delete it (it
deletes the VPC before what is in it), so ``make deploy`` a second time and ``make destroy`` are
not run here: docs/deploy.md says what they do and what this does not prove."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.deploy.template import ROOT

Aws = Callable[[str], Any]


def make(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip


@pytest.fixture
def aws_env(s3_client_kwargs: dict[str, str], deploy_bin: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {
        "AWS_ENDPOINT_URL": s3_client_kwargs["endpoint_url"],
        "AWS_ACCESS_KEY_ID": s3_client_kwargs["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_client_kwargs["aws_secret_access_key"],
        "AWS_REGION": s3_client_kwargs["region_name"],
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }  # fmt: skip


def test_make_deploy_creates_the_stack_from_the_built_artifacts(
    aws: Aws, aws_env: dict[str, str]
) -> None:
    sm = aws("secretsmanager")
    secret = sm.create_secret(Name=f"tp-mk-{uuid.uuid4().hex}", SecretString="mysql://a:b@h/d")
    stack, bucket = f"tpmk{uuid.uuid4().hex[:8]}", f"tp-mk-{uuid.uuid4().hex[:10]}"
    res = make(["deploy", f"STACK={stack}", f"BUCKET={bucket}",
                f"PARAMS=DatabaseMode=existing ExistingDatabaseSecretArn={secret['ARN']}"],
               aws_env)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    printed = res.stderr
    for command in ("+ aws s3 mb", "+ aws s3 cp", "+ aws cloudformation deploy"):
        assert command in printed, command

    cf = aws("cloudformation")
    [described] = cf.describe_stacks(StackName=stack)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    given = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert given["BucketName"] == bucket and given["ArtifactsBucket"] == f"{bucket}-artifacts"
    s3 = aws("s3")
    for key, built in ((given["LambdaZipKey"], "lambda.zip"),
                       (given["HostBundleKey"], "host-bundle.tar.gz")):  # fmt: skip
        local = (ROOT / "dist" / built).read_bytes()
        assert key.split("/", 1)[1].split(".", 1)[0] == hashlib.sha256(local).hexdigest()[:16]
        uploaded = s3.get_object(Bucket=f"{bucket}-artifacts", Key=key)["Body"].read()
        assert uploaded == local, key
    block = s3.get_public_access_block(Bucket=f"{bucket}-artifacts")
    assert all(block["PublicAccessBlockConfiguration"].values())
    fn = aws("lambda").get_function(FunctionName=f"{stack}-loader")
    assert fn["Configuration"]["CodeSize"] == len((ROOT / "dist" / "lambda.zip").read_bytes())


def test_make_deploy_and_destroy_say_what_they_need(aws_env: dict[str, str]) -> None:
    res = make(["deploy", "STACK=x"], aws_env)
    assert res.returncode == 2 and "usage: make deploy STACK=name BUCKET=" in res.stderr
    res = make(["destroy"], aws_env)
    assert res.returncode == 2 and "usage: make destroy STACK=name" in res.stderr


def test_a_failing_step_stops_make_deploy(aws: Aws, aws_env: dict[str, str]) -> None:
    """A stack CloudFormation cannot create (its AMI parameter names no SSM parameter): make
    stops at ``aws cloudformation deploy``, non-zero, before printing outputs."""
    stack, bucket = f"tpmk{uuid.uuid4().hex[:8]}", f"tp-mk-{uuid.uuid4().hex[:10]}"
    res = make(["deploy", f"STACK={stack}", f"BUCKET={bucket}",
                "PARAMS=ImageId=/tradepipe/no/such/parameter"], aws_env)  # fmt: skip
    assert res.returncode != 0
    assert "+ aws cloudformation deploy" in res.stderr
    assert "== outputs" not in res.stderr
