"""The template and the deploy scripts, checked statically: cfn-lint clean; checkov with no
failed check and every skip a real finding with a reason; the scripts and the host's user data
pass ``bash -n`` and shellcheck; the function's policy is docs/lambda.md's (which
tests/lambda/test_lambda_policy.py checks against the calls the packaged handler makes)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.deploy.template import ROOT, TEMPLATE, Resolver, load

SCRIPTS = [ROOT / "deploy" / "host-setup.sh", ROOT / "deploy" / "aws-deploy"]
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::Partition": "aws", "AWS::StackName": "tp"}  # fmt: skip


def test_cfn_lint_is_clean(deploy_bin: Path) -> None:
    res = subprocess.run([deploy_bin / "cfn-lint", str(TEMPLATE)], capture_output=True,
                         text=True, timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


def test_cfn_lint_ignores_only_what_the_template_justifies(
    deploy_bin: Path, tmp_path: Path
) -> None:
    """Without the template's one ignore, cfn-lint reports exactly that check, nothing else."""
    assert load()["Metadata"]["cfn-lint"]["config"]["ignore_checks"] == ["W1030"]
    text = TEMPLATE.read_text().replace("ignore_checks: [W1030]\n", "ignore_checks: []\n")
    assert text != TEMPLATE.read_text()
    unignored = tmp_path / "tradepipe.yaml"
    unignored.write_text(text)
    res = subprocess.run([deploy_bin / "cfn-lint", "--format", "json", str(unignored)],
                         capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    found = {m["Rule"]["Id"] for m in json.loads(res.stdout or "[]")}
    assert found == {"W1030"}, res.stdout


def checkov(deploy_bin: Path) -> dict[str, Any]:
    res = subprocess.run(
        [deploy_bin / "checkov", "--file", str(TEMPLATE), "--framework", "cloudformation",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": str(deploy_bin), "BC_SKIP_MAPPING": "TRUE", "HOME": str(ROOT / ".stack")},
    )  # fmt: skip
    assert res.stdout.strip(), res.stderr[-3000:]
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def declared_skips() -> dict[tuple[str, str], str]:
    """(check id, resource) -> the reason written in the template."""
    out = {}
    for logical, res in load()["Resources"].items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            out[(skip["id"], f"{res['Type']}.{logical}")] = skip["comment"]
    return out


def test_checkov_finds_nothing_unfixed_or_unjustified(deploy_bin: Path) -> None:
    report = checkov(deploy_bin)
    results = report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 40  # the scan did run its checks
    skipped = {(c["check_id"], c["resource"]) for c in results["skipped_checks"]}
    declared = declared_skips()
    # every exception in the template silences a finding checkov really has (no stale skips)
    assert skipped == set(declared)
    for key, reason in declared.items():
        assert len(reason) > 30, f"{key}: the reason must say why"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_deploy_scripts_pass_bash_n_and_shellcheck(script: Path, deploy_bin: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    res = subprocess.run([deploy_bin / "shellcheck", str(script)], capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout


def user_data(resolver: Resolver) -> str:
    text: str = resolver.value(resolver.doc["Resources"]["Host"]["Properties"]["UserData"])
    return text


def user_data_script(text: str) -> str:
    """The shell part of the multipart user data."""
    part = text.split('Content-Type: text/x-shellscript; charset="us-ascii"\n\n', 1)[1]
    return part.split("\n--//--", 1)[0]


def test_user_data_runs_every_boot_and_passes_shellcheck(tmp_path: Path, deploy_bin: Path) -> None:
    doc = load()
    resolver = Resolver(doc, {"BucketName": "tp-trades", "ArtifactsBucket": "tp-art",
                              "LambdaZipKey": "lambda/x.zip", "HostBundleKey": "host/y.tar.gz",
                              "DatabaseMode": "existing",
                              "ExistingDatabaseSecretArn": "arn:aws:secretsmanager:x"},
                        PSEUDO)  # fmt: skip
    text = user_data(resolver)
    assert "cloud_final_modules:\n  - [scripts-user, always]" in text
    script = tmp_path / "user-data.sh"
    script.write_text(user_data_script(text))
    assert script.read_text().startswith("#!/bin/bash\nset -uo pipefail\n")
    assert "  set -e\n" in script.read_text()  # the setup stops at its first error ...
    # ... and its status is what the instance signals to its CreationPolicy
    signal = "/opt/aws/bin/cfn-signal -e \"$status\" --stack 'tp' --resource Host"
    assert signal in script.read_text()
    assert doc["Resources"]["Host"]["CreationPolicy"]["ResourceSignal"]["Count"] == 1
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    res = subprocess.run([deploy_bin / "shellcheck", str(script)], capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout
    # it hands host-setup.sh every flag that script requires
    call = next(line for line in script.read_text().splitlines() if "host-setup.sh " in line)
    setup = (ROOT / "deploy" / "host-setup.sh").read_text()
    required = re.search(r"for name in ([a-z_ ]+); do", setup)
    assert required is not None
    for name in required.group(1).split():
        flag = "--" + name.replace("secret", "db-secret").replace("_", "-")
        assert f"{flag} " in call, flag
    assert "--db-secret 'arn:aws:secretsmanager:x'" in call and "host/y.tar.gz" in call


def docs_policy() -> dict[str, Any]:
    text = (ROOT / "docs" / "lambda.md").read_text()
    section = text.split("### IAM (least privilege)", 1)[1].split("\n### ", 1)[0]
    [block] = re.findall(r"```json\n(.*?)```", section, re.S)
    return dict(json.loads(block))


@pytest.mark.parametrize("mode", ["rds", "existing"])
def test_function_policy_is_the_documented_least_privilege_policy(mode: str) -> None:
    """Side by side: the template's statements with the documentation's placeholders put back
    are docs/lambda.md's policy, statement for statement."""
    doc = load()
    names = {"DatabaseSecretAttachment": "SECRET_ARN"}  # Ref of the attachment: the secret
    attrs = {("FailureQueue", "Arn"): "FAILURE_QUEUE_ARN"}
    resolver = Resolver(
        doc,
        {"BucketName": "BUCKET", "DatabaseMode": mode, "ExistingDatabaseSecretArn": "SECRET_ARN"},
        PSEUDO,
        physical=names,
        attribute=lambda logical, attr: attrs[(logical, attr)],
    )
    role = resolver.properties("FunctionRole")
    [policy] = role["Policies"]
    assert policy["PolicyDocument"] == docs_policy()
    managed = role["ManagedPolicyArns"]
    assert managed == ["arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"]


def test_host_role_may_put_only_to_trades() -> None:
    doc = load()
    resolver = Resolver(doc, {"BucketName": "b", "ArtifactsBucket": "a", "HostBundleKey": "k",
                              "ExistingDatabaseSecretArn": "s", "DatabaseMode": "existing"},
                        PSEUDO)  # fmt: skip
    [policy] = resolver.properties("HostRole")["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    puts = [s for s in statements if any(a.startswith("s3:Put") for a in _actions(s))]
    assert [(s["Action"], s["Resource"]) for s in puts] == [
        ("s3:PutObject", "arn:aws:s3:::b/trades/*")
    ]
    assert {a for s in statements for a in _actions(s)} == {
        "s3:PutObject", "s3:GetObject", "secretsmanager:GetSecretValue",
    }  # fmt: skip
    reads = [s["Resource"] for s in statements if "s3:GetObject" in _actions(s)]
    assert reads == ["arn:aws:s3:::a/k"]  # its own bundle, nothing else
    # the database secret, and no other: host-setup.sh reads it for migrate and verify.env
    secrets = [s["Resource"] for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    assert secrets == ["s"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_notification_filter_never_matches_rejected_copies() -> None:
    doc = load()
    [config] = doc["Resources"]["TradesBucket"]["Properties"]["NotificationConfiguration"][
        "LambdaConfigurations"
    ]
    rules = {r["Name"]: r["Value"] for r in config["Filter"]["S3Key"]["Rules"]}
    assert rules == {"prefix": "trades/", "suffix": ".ndjson.gz"}
    assert config["Event"] == "s3:ObjectCreated:*"
    # the circular dependency is avoided: the permission names the bucket by its parameter
    permission = doc["Resources"]["InvokePermission"]["Properties"]
    assert permission["SourceArn"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"}
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert doc["Resources"]["TradesBucket"]["DependsOn"] == "InvokePermission"


def test_template_fits_a_template_body() -> None:
    """``aws cloudformation deploy`` sends the body inline up to 51,200 bytes (make deploy uses
    no template bucket)."""
    assert len(TEMPLATE.read_bytes()) < 51_200


def test_function_environment_is_the_documented_contract() -> None:
    """The function's variables are docs/lambda.md's (its Environment table), the database by
    secret, never a URL with a password in it."""
    text = (ROOT / "docs" / "lambda.md").read_text()
    table = text.split("### Environment", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(TRADEPIPE_\w+)`", table, flags=re.MULTILINE))
    variables = load()["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert set(variables) <= documented
    assert "TRADEPIPE_DB_SECRET_ID" in variables and "TRADEPIPE_DB_URL" not in variables
