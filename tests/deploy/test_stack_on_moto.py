"""deploy/tradepipe.yaml created on the local AWS (moto's server mode, the local stack's S3
endpoint), every resource checked against the template's own values, and an object put to the
bucket run through to rows in MariaDB.

What moto (5.2.x) does with the template, and so what this proves:

- It creates the VPC, subnets, routes, endpoints, security groups, roles and their policies,
  the instance profile, the instance (with its user data), the log group, the function, the
  permission, the queue, the topic and, with DatabaseMode=rds, the subnet group and the RDS
  instance: each is read back through the service's API and compared with the template.
- It has no CloudFormation model for the bucket policy, the function's event-invoke config, the
  CloudWatch alarm, or the Secrets Manager secret and its attachment (``UNMODELLED``: the test
  fails if that changes). It ignores some properties: of the bucket all but the encryption, a
  role's managed policies (checked by name only), a security group's egress, a subnet's
  MapPublicIpOnLaunch, an instance's SecurityGroupIds and MetadataOptions, a DB instance's
  VPCSecurityGroups; and its Ref of a DB parameter group is not the group's name, so the rds
  test leaves the one line naming it out of the template it sends. Those parts are applied
  here through the service APIs from the template's properties (not from a second copy), so
  their shapes are at least valid API input and read back as declared.
- The function cannot run inside moto without Docker: moto's own notification delivery to it
  fails (silently, as S3's would be asynchronous). The bucket gets the template's notification
  configuration and, with the same events and filter, a queue this test reads: the event moto
  would have sent the function is taken from there and given to ``lambda/handler.py``
  in-process, with the function's configured environment, and every AWS call it makes must be
  allowed by the template's role policy.
"""

from __future__ import annotations

import ast
import base64
import fnmatch
import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

import boto3
import pymysql
import pytest
from botocore.exceptions import ClientError
from tests.deploy.template import TEMPLATE, Resolver, load
from tests.store.helpers import (
    BTC_FILE,
    ETH_FILE,
    expected,
    load_handler,
    migrated,
    mysql_kwargs,
    ndjson,
    real_trades,
    stored,
)

UNMODELLED = {"TradesBucketPolicy", "FunctionInvokeConfig", "FailureQueueAlarm"}
UNMODELLED_RDS = {"DatabaseSecret", "DatabaseSecretAttachment"}
PARAMETER_GROUP_LINE = "      DBParameterGroupName: !Ref DatabaseParameters\n"
ACCOUNT = "123456789012"
MANAGED = {
    "FunctionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    "HostRole": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
}
Aws = Callable[[str], Any]


class Stack:
    """A stack created from the template on the local AWS, and its template values."""

    def __init__(self, aws: Aws, parameters: dict[str, str], body: str | None = None) -> None:
        self.aws = aws
        self.name = f"tp{uuid.uuid4().hex[:8]}"
        self.parameters = parameters
        cf = aws("cloudformation")
        cf.create_stack(
            StackName=self.name,
            TemplateBody=TEMPLATE.read_text() if body is None else body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        self.description = cf.describe_stacks(StackName=self.name)["Stacks"][0]
        summaries = cf.list_stack_resources(StackName=self.name)["StackResourceSummaries"]
        self.physical = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
            for r in summaries
            if r.get("LogicalResourceId")
        }
        self.statuses = {r.get("LogicalResourceId"): r.get("ResourceStatus") for r in summaries}
        region = aws("sts").meta.region_name
        self.t = Resolver(
            load(),
            parameters,
            {
                "AWS::Region": region,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::StackName": self.name,
            },
            self.physical,
            self.attribute,
        )

    def attribute(self, logical: str, attr: str) -> str:
        phys = self.physical[logical]
        if (logical, attr) == ("Function", "Arn"):
            return str(
                self.aws("lambda").get_function(FunctionName=phys)["Configuration"]["FunctionArn"]
            )
        if (logical, attr) == ("FailureQueue", "Arn"):
            attrs = self.aws("sqs").get_queue_attributes(QueueUrl=phys, AttributeNames=["QueueArn"])
            return str(attrs["Attributes"]["QueueArn"])
        if (logical, attr) == ("FailureQueue", "QueueName"):
            return phys.rsplit("/", 1)[1]
        if attr == "Arn" and self.t.doc["Resources"][logical]["Type"] == "AWS::IAM::Role":
            return str(self.aws("iam").get_role(RoleName=phys)["Role"]["Arn"])
        raise AssertionError(f"no attribute {logical}.{attr} in this test")

    def output(self, key: str) -> str:
        return next(o["OutputValue"] for o in self.description["Outputs"] if o["OutputKey"] == key)


@pytest.fixture
def artifacts(aws: Aws) -> Iterator[str]:
    """An artifacts bucket holding a zip under the key the stack names (moto stores the code;
    it runs nothing)."""
    s3 = aws("s3")
    name = f"tp-art-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="lambda/test.zip", Body=_zip())
    yield name


def _zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def secret_json(url: str) -> str:
    """RDS's JSON secret shape (the one the template generates) for a MariaDB URL."""
    u = urlsplit(url)
    return json.dumps(
        {
            "username": unquote(u.username or ""),
            "password": unquote(u.password or ""),
            "host": u.hostname,
            "port": u.port,
            "dbname": u.path.lstrip("/"),
        }
    )


def params(bucket: str, artifacts: str, **extra: str) -> dict[str, str]:
    return {
        "BucketName": bucket,
        "ArtifactsBucket": artifacts,
        "LambdaZipKey": "lambda/test.zip",
        "HostBundleKey": "host/test.tar.gz",
        **extra,
    }


# ---------------------------------------------------------------- configuration via the API


def apply_bucket_configuration(stack: Stack, capture_queue_arn: str) -> None:
    """What moto ignores of the bucket's template properties, applied through S3's API."""
    s3, props = stack.aws("s3"), stack.t.properties("TradesBucket")
    bucket = props["BucketName"]
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
    )
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
    s3.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"]
    )
    rules = []
    for rule in props["LifecycleConfiguration"]["Rules"]:
        api: dict[str, Any] = {
            "ID": rule["Id"],
            "Status": rule["Status"],
            "Filter": {"Prefix": rule["Prefix"]},
            "Expiration": {"Days": int(rule["ExpirationInDays"])},
            "NoncurrentVersionExpiration": rule["NoncurrentVersionExpiration"],
        }
        if "AbortIncompleteMultipartUpload" in rule:
            api["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
        rules.append(api)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    functions, queues = [], []
    for cfg in props["NotificationConfiguration"]["LambdaConfigurations"]:
        flt = {"Key": {"FilterRules": cfg["Filter"]["S3Key"]["Rules"]}}
        functions.append(
            {"LambdaFunctionArn": cfg["Function"], "Events": [cfg["Event"]], "Filter": flt}
        )
        queues.append({"QueueArn": capture_queue_arn, "Events": [cfg["Event"]], "Filter": flt})
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": functions,
            "QueueConfigurations": queues,
        },
    )


def check_bucket(stack: Stack) -> None:
    s3, props = stack.aws("s3"), stack.t.properties("TradesBucket")
    bucket = props["BucketName"]
    assert stack.physical["TradesBucket"] == bucket == stack.output("BucketName")
    [enc] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    [declared] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert enc["ApplyServerSideEncryptionByDefault"] == declared["ServerSideEncryptionByDefault"]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == props["PublicAccessBlockConfiguration"] and all(block.values())
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    days = int(stack.t.params["ObjectRetentionDays"])
    assert {(r["ID"], r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules} == {
        ("expire-trades", "trades/", days),
        ("expire-rejected", "rejected/", days),
    }
    # The bucket policy (no moto model), applied from the template: moto enforces it, so a put
    # over plain HTTP (this endpoint's only scheme) is refused; removed again for the rest.
    policy = stack.t.properties("TradesBucketPolicy")
    assert policy["Bucket"] == bucket
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy["PolicyDocument"]))
    [deny] = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    with pytest.raises(ClientError, match=r"Forbidden|AccessDenied"):
        s3.put_object(Bucket=bucket, Key="trades/plain-http.ndjson.gz", Body=b"")
    s3.delete_bucket_policy(Bucket=bucket)
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    [fn] = notification["LambdaFunctionConfigurations"]
    assert fn["LambdaFunctionArn"] == stack.attribute("Function", "Arn")
    rules_back = {r["Name"].lower(): r["Value"] for r in fn["Filter"]["Key"]["FilterRules"]}
    assert rules_back == {"prefix": "trades/", "suffix": ".ndjson.gz"}


def check_function(stack: Stack) -> dict[str, str]:
    lam, props = stack.aws("lambda"), stack.t.properties("Function")
    cfg = lam.get_function_configuration(FunctionName=stack.physical["Function"])
    assert cfg["FunctionName"] == props["FunctionName"] == stack.output("FunctionName")
    for key in ("Runtime", "Handler", "MemorySize", "Timeout"):
        assert cfg[key] == props[key], key
    assert (cfg["Runtime"], cfg["Handler"], cfg["MemorySize"], cfg["Timeout"]) == (
        "python3.11",
        "handler.handler",
        512,
        60,
    )
    assert cfg["Role"] == stack.attribute("FunctionRole", "Arn")
    assert cfg["Environment"]["Variables"] == props["Environment"]["Variables"]
    assert set(cfg["VpcConfig"]["SubnetIds"]) == {
        stack.physical["PrivateSubnetA"],
        stack.physical["PrivateSubnetB"],
    }
    assert cfg["VpcConfig"]["SecurityGroupIds"] == [stack.physical["FunctionSecurityGroup"]]
    concurrency = lam.get_function_concurrency(FunctionName=stack.physical["Function"])
    assert concurrency["ReservedConcurrentExecutions"] == props["ReservedConcurrentExecutions"] == 5
    # the permission: S3, from this account and this bucket only
    [perm] = json.loads(lam.get_policy(FunctionName=stack.physical["Function"])["Policy"])[
        "Statement"
    ]
    declared = stack.t.properties("InvokePermission")
    assert (
        perm["Principal"] == {"Service": declared["Principal"]}
        and perm["Action"] == declared["Action"]
    )
    assert perm["Condition"]["ArnLike"]["AWS:SourceArn"] == declared["SourceArn"]
    assert (
        perm["Condition"]["StringEquals"]["AWS:SourceAccount"]
        == declared["SourceAccount"]
        == ACCOUNT
    )
    assert declared["SourceArn"] == f"arn:aws:s3:::{stack.t.params['BucketName']}"
    # the event-invoke config (no moto model): applied from the template, read back
    invoke = stack.t.properties("FunctionInvokeConfig")
    lam.put_function_event_invoke_config(**invoke)
    back = lam.get_function_event_invoke_config(
        FunctionName=invoke["FunctionName"], Qualifier=invoke["Qualifier"]
    )
    assert back["DestinationConfig"]["OnFailure"]["Destination"] == stack.attribute(
        "FailureQueue", "Arn"
    )
    assert (back["MaximumRetryAttempts"], back["MaximumEventAgeInSeconds"]) == (2, 3600)
    variables: dict[str, str] = cfg["Environment"]["Variables"]
    return variables


def check_roles(stack: Stack) -> None:
    iam = stack.aws("iam")
    for logical, service in (("FunctionRole", "lambda"), ("HostRole", "ec2")):
        props, name = stack.t.properties(logical), stack.physical[logical]
        role = iam.get_role(RoleName=name)["Role"]
        assert role["AssumeRolePolicyDocument"] == props["AssumeRolePolicyDocument"]
        assert props["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": f"{service}.amazonaws.com"
        }
        [policy] = props["Policies"]
        assert iam.list_role_policies(RoleName=name)["PolicyNames"] == [policy["PolicyName"]]
        got = iam.get_role_policy(RoleName=name, PolicyName=policy["PolicyName"])["PolicyDocument"]
        if isinstance(got, str):  # moto keeps a template's policy as the repr of its dict
            got = ast.literal_eval(got)
        assert got == policy["PolicyDocument"]
        # moto attaches no ManagedPolicyArns (and its server holds no AWS managed policy to
        # attach): the template's ARNs are AWS's own, checked by name only
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        assert props["ManagedPolicyArns"] == [MANAGED[logical]]
    profile = iam.get_instance_profile(InstanceProfileName=stack.physical["HostProfile"])
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [
        stack.physical["HostRole"]
    ]


def check_failure_path(stack: Stack) -> None:
    sqs, props = stack.aws("sqs"), stack.t.properties("FailureQueue")
    attrs = sqs.get_queue_attributes(
        QueueUrl=stack.physical["FailureQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert attrs["MessageRetentionPeriod"] == str(props["MessageRetentionPeriod"]) == "1209600"
    assert attrs["SqsManagedSseEnabled"] == "true"
    topic = stack.aws("sns").get_topic_attributes(TopicArn=stack.physical["AlarmTopic"])
    assert topic["Attributes"]["TopicArn"].endswith(f":{stack.name}-alarms")
    alarm = stack.t.properties("FailureQueueAlarm")  # no moto model: applied from the template
    stack.aws("cloudwatch").put_metric_alarm(**alarm)
    [back] = stack.aws("cloudwatch").describe_alarms(AlarmNames=[alarm["AlarmName"]])[
        "MetricAlarms"
    ]
    assert back["Dimensions"] == [{"Name": "QueueName", "Value": f"{stack.name}-loader-failures"}]
    assert (back["MetricName"], back["Threshold"], back["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible",
        1.0,
        "GreaterThanOrEqualToThreshold",
    )
    assert back["AlarmActions"] == [stack.physical["AlarmTopic"]]


def check_network_and_host(stack: Stack) -> None:
    ec2 = stack.aws("ec2")
    groups = {
        g["GroupId"]: g
        for g in ec2.describe_security_groups(
            GroupIds=[
                stack.physical[k]
                for k in ("FunctionSecurityGroup", "HostSecurityGroup", "EndpointSecurityGroup")
            ]
        )["SecurityGroups"]
    }
    assert groups[stack.physical["HostSecurityGroup"]]["IpPermissions"] == []  # no inbound
    assert groups[stack.physical["FunctionSecurityGroup"]]["IpPermissions"] == []
    [inbound] = groups[stack.physical["EndpointSecurityGroup"]]["IpPermissions"]
    assert inbound["FromPort"] == 443
    # the host's too: the endpoint's private DNS covers the whole VPC (host-setup reads the secret)
    assert sorted(p["GroupId"] for p in inbound["UserIdGroupPairs"]) == sorted(
        [stack.physical["FunctionSecurityGroup"], stack.physical["HostSecurityGroup"]]
    )
    for logical in ("FunctionSecurityGroup", "HostSecurityGroup", "EndpointSecurityGroup"):
        egress = apply_egress(stack, logical)
        declared = {
            (r["IpProtocol"], r.get("FromPort"), r["CidrIp"])
            for r in stack.t.properties(logical)["SecurityGroupEgress"]
        }
        assert egress == declared, logical
    assert apply_egress(stack, "FunctionSecurityGroup") == {
        ("tcp", 3306, "10.42.0.0/16"),
        ("tcp", 443, "0.0.0.0/0"),
    }
    endpoints = ec2.describe_vpc_endpoints(
        VpcEndpointIds=[stack.physical["S3Endpoint"], stack.physical["SecretsEndpoint"]]
    )["VpcEndpoints"]
    assert {(e["ServiceName"], e["VpcEndpointType"]) for e in endpoints} == {
        ("com.amazonaws.us-east-1.s3", "Gateway"),
        ("com.amazonaws.us-east-1.secretsmanager", "Interface"),
    }
    for logical in ("PublicSubnet", "PrivateSubnetA", "PrivateSubnetB"):  # moto ignores it
        mapped = stack.t.properties(logical).get("MapPublicIpOnLaunch", False)
        ec2.modify_subnet_attribute(
            SubnetId=stack.physical[logical], MapPublicIpOnLaunch={"Value": mapped}
        )
    subnets = {
        s["SubnetId"]: s
        for s in ec2.describe_subnets(
            SubnetIds=[
                stack.physical[k] for k in ("PublicSubnet", "PrivateSubnetA", "PrivateSubnetB")
            ]
        )["Subnets"]
    }
    assert subnets[stack.physical["PublicSubnet"]]["MapPublicIpOnLaunch"] is True
    assert subnets[stack.physical["PrivateSubnetA"]]["MapPublicIpOnLaunch"] is False
    assert len({s["AvailabilityZone"] for s in subnets.values()}) == 2  # RDS wants two zones
    props = stack.t.properties("Host")
    # moto's instance model reads neither SecurityGroupIds nor MetadataOptions: applied here
    ec2.modify_instance_attribute(
        InstanceId=stack.physical["Host"], Groups=props["SecurityGroupIds"]
    )
    ec2.modify_instance_metadata_options(
        InstanceId=stack.physical["Host"], **props["MetadataOptions"]
    )
    [reservation] = ec2.describe_instances(InstanceIds=[stack.physical["Host"]])["Reservations"]
    [host] = reservation["Instances"]
    [disk] = host["BlockDeviceMappings"]
    [volume] = ec2.describe_volumes(VolumeIds=[disk["Ebs"]["VolumeId"]])["Volumes"]
    [declared_disk] = props["BlockDeviceMappings"]
    assert (volume["Encrypted"], volume["Size"]) == (True, declared_disk["Ebs"]["VolumeSize"])
    assert host["InstanceType"] == props["InstanceType"] == "t3.micro"
    assert host["SubnetId"] == stack.physical["PublicSubnet"]
    assert [g["GroupId"] for g in host["SecurityGroups"]] == [stack.physical["HostSecurityGroup"]]
    assert host["IamInstanceProfile"]["Arn"].endswith("/" + stack.physical["HostProfile"])
    assert host["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 only
    ssm = stack.aws("ssm").get_parameter(Name=stack.t.doc["Parameters"]["ImageId"]["Default"])
    assert host["ImageId"] == ssm["Parameter"]["Value"]  # Amazon Linux 2023 from SSM
    data = ec2.describe_instance_attribute(InstanceId=host["InstanceId"], Attribute="userData")
    assert base64.b64decode(data["UserData"]["Value"]).decode() == props["UserData"]
    assert stack.output("HostInstanceId") == host["InstanceId"]


def apply_egress(stack: Stack, logical: str) -> set[tuple[str, int | None, str]]:
    """moto gives a template's group the default allow-all egress, ignoring its
    SecurityGroupEgress: replaced here by the template's rules, read back."""
    ec2, group = stack.aws("ec2"), stack.physical[logical]
    [current] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    if current["IpPermissionsEgress"]:
        ec2.revoke_security_group_egress(
            GroupId=group, IpPermissions=current["IpPermissionsEgress"]
        )
    wanted = []
    for rule in stack.t.properties(logical)["SecurityGroupEgress"]:
        perm: dict[str, Any] = {
            "IpProtocol": rule["IpProtocol"],
            "IpRanges": [{"CidrIp": rule["CidrIp"]}],
        }
        if "FromPort" in rule:
            perm |= {"FromPort": rule["FromPort"], "ToPort": rule["ToPort"]}
        wanted.append(perm)
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=wanted)
    [back] = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    return {
        (p["IpProtocol"], p.get("FromPort"), r["CidrIp"])
        for p in back["IpPermissionsEgress"]
        for r in p["IpRanges"]
    }


# ---------------------------------------------------------------------------------- tests


@pytest.fixture
def db(mysql_db: str) -> str:
    return migrated(mysql_db)


@pytest.fixture
def db_secret(aws: Aws, db: str) -> Iterator[str]:
    sm = aws("secretsmanager")
    arn = str(
        sm.create_secret(Name=f"tp-db-{uuid.uuid4().hex}", SecretString=secret_json(db))["ARN"]
    )
    yield arn
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_stack_with_an_existing_database_stands_up_and_loads_a_put_into_mariadb(
    aws: Aws,
    artifacts: str,
    db: str,
    db_secret: str,
    s3_client_kwargs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = f"tp-trades-{uuid.uuid4().hex[:10]}"
    stack = Stack(
        aws, params(bucket, artifacts, DatabaseMode="existing", ExistingDatabaseSecretArn=db_secret)
    )
    assert stack.description["StackStatus"] == "CREATE_COMPLETE"
    declared = set(stack.t.resources())
    assert declared - set(stack.physical) == UNMODELLED
    assert set(stack.physical) <= declared
    assert all(stack.statuses[k] == "CREATE_COMPLETE" for k in stack.physical)
    assert "Database" not in declared and "DatabaseSecret" not in declared

    sqs = aws("sqs")
    capture = sqs.create_queue(QueueName=f"tp-capture-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    capture_arn = sqs.get_queue_attributes(QueueUrl=capture, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    apply_bucket_configuration(stack, capture_arn)
    check_bucket(stack)
    env = check_function(stack)
    assert env == {"TRADEPIPE_DB_SECRET_ID": db_secret, "TRADEPIPE_LOG_LEVEL": "INFO"}
    check_roles(stack)
    check_failure_path(stack)
    check_network_and_host(stack)

    # --- a put, through the notification, to rows
    s3 = aws("s3")
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    key = "trades/symbol=BTCUSDT/date=2021-04-04/hour=20/minute=03/a b.ndjson.gz"
    raw = ndjson(btc) + b'{"e":"aggTrade","bad":1}\n' + ndjson(eth)
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(raw))
    # neither of these may reach the function: the filter's prefix and suffix
    s3.put_object(Bucket=bucket, Key="rejected/trades/x.ndjson.gz", Body=gzip.compress(raw))
    s3.put_object(Bucket=bucket, Key="trades/symbol=BTCUSDT/x.ndjson", Body=raw)
    messages = receive_all(sqs, capture)
    assert len(messages) == 1, messages
    [event] = messages
    [record] = event["Records"]
    assert record["eventName"].startswith("ObjectCreated:")
    # URL-encoded as S3 sends keys (moto also encodes "/"; the handler decodes either)
    assert unquote_plus(record["s3"]["object"]["key"]) == key
    assert record["s3"]["bucket"]["name"] == bucket

    # the function's environment, as configured; boto3 reaches the local AWS
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("TRADEPIPE_DB_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_client_kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_client_kwargs["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_client_kwargs["region_name"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_client_kwargs["endpoint_url"])
    [policy] = stack.t.properties("FunctionRole")["Policies"]  # before the recording starts
    statements = policy["PolicyDocument"]["Statement"]
    calls = record_calls(monkeypatch)  # from here on, the handler's calls only
    handler = load_handler()
    result = handler.handler(event, None)
    assert result == {
        "objects": 1,
        "trades": len(btc) + len(eth),
        "added": len(btc) + len(eth),
        "rejected": 1,
    }
    assert stored(db) == expected(btc + eth)
    assert tally(raw) == db_totals(db)  # an independent count of the object's lines
    rejected = s3.get_object(Bucket=bucket, Key="rejected/" + key.removesuffix(".gz"))
    assert rejected["Body"].read() == b'{"e":"aggTrade","bad":1}\n'
    assert receive_all(sqs, capture, wait=1) == []  # the rejected/ copy triggers nothing

    # every call the handler made is allowed by the template's role policy
    requests = {iam_request(c) for c in calls}
    assert {a for a, _ in requests} == {
        "secretsmanager:GetSecretValue",
        "s3:GetObject",
        "s3:PutObject",
    }
    for action, resource in requests:
        assert any(
            action in _list(s["Action"]) and fnmatch.fnmatchcase(resource, s["Resource"])
            for s in statements
        ), f"{action} on {resource} is not granted"


def receive_all(sqs: Any, url: str, wait: int = 5) -> list[dict[str, Any]]:
    """Every message the queue holds now (S3's test event aside), long-polling once."""
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        batch = got.get("Messages", [])
        if not batch:
            return out
        for m in batch:
            body = json.loads(m["Body"])
            if body.get("Event") != "s3:TestEvent":
                out.append(body)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        wait = 1


def record_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The AWS calls made through boto3's default session from now on (the handler's)."""
    calls: list[dict[str, Any]] = []
    session = boto3.session.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append(
            {
                "service": model.service_model.service_name,
                "operation": model.name,
                "params": {k: v for k, v in params.items() if isinstance(v, str)},
            }
        )

    session.events.register("before-parameter-build", record)
    return calls


def iam_request(call: dict[str, Any]) -> tuple[str, str]:
    op, p = (call["service"], call["operation"]), call["params"]
    if op == ("s3", "GetObject"):
        action = "s3:GetObjectVersion" if "VersionId" in p else "s3:GetObject"
        return action, f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"
    if op == ("s3", "PutObject"):
        return "s3:PutObject", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"
    if op == ("secretsmanager", "GetSecretValue"):
        return "secretsmanager:GetSecretValue", p["SecretId"]
    raise AssertionError(f"a call this test cannot map to IAM: {call}")


def _list(action: str | list[str]) -> list[str]:
    return [action] if isinstance(action, str) else action


def tally(raw: bytes) -> tuple[int, Decimal]:
    """Aggregate trades and base quantity of the object's good lines, counted from the JSON."""
    count, qty = 0, Decimal(0)
    for line in raw.splitlines():
        obj = json.loads(line)
        if "a" in obj and "q" in obj:
            count += 1
            qty += Decimal(obj["q"])
    return count, qty


def db_totals(url: str) -> tuple[int, Decimal]:
    conn = pymysql.connect(**mysql_kwargs(url))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT SUM(total_count_b + total_count_s), "
                "SUM(total_btc_b + total_btc_s) FROM trade_minutes"
            )
            count, qty = cur.fetchone()
    finally:
        conn.close()
    return int(count), Decimal(qty)


def test_stack_with_rds_creates_the_database_in_the_private_subnets(
    aws: Aws, artifacts: str
) -> None:
    bucket = f"tp-trades-{uuid.uuid4().hex[:10]}"
    # moto's Ref of a DB parameter group is the object, not its name, which its DB instance
    # then refuses: the one line naming it is left out here and applied through the API below
    body = TEMPLATE.read_text()
    assert body.count(PARAMETER_GROUP_LINE) == 1
    body = body.replace(PARAMETER_GROUP_LINE, "")
    stack = Stack(aws, params(bucket, artifacts), body)  # DatabaseMode's default: rds
    assert stack.description["StackStatus"] == "CREATE_COMPLETE"
    declared = set(stack.t.resources())
    assert declared - set(stack.physical) == UNMODELLED | UNMODELLED_RDS
    rds, raw = aws("rds"), stack.t.doc["Resources"]["Database"]["Properties"]
    # the credentials are dynamic references to the secret moto does not create
    assert raw["MasterUsername"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:username}}"
    }
    props = {
        k: stack.t.value(v)
        for k, v in raw.items()
        if not k.startswith("MasterUser") and k != "DBParameterGroupName"
    }
    # (moto reports no physical id for it either: found by the name it generates)
    [group] = [
        g["DBParameterGroupName"]
        for g in rds.describe_db_parameter_groups()["DBParameterGroups"]
        if g["DBParameterGroupName"].startswith(f"{stack.name.lower()}-databaseparameters-")
    ]
    described = rds.describe_db_parameters(DBParameterGroupName=group)
    values = {p["ParameterName"]: p.get("ParameterValue") for p in described["Parameters"]}
    declared = stack.t.properties("DatabaseParameters")
    assert {k: values.get(k) for k in declared["Parameters"]} == declared["Parameters"]
    assert declared["Parameters"]["authentication_policy"] == "*:mysql_native_password"
    assert raw["DBParameterGroupName"] == {"Ref": "DatabaseParameters"}
    rds.modify_db_instance(
        DBInstanceIdentifier=props["DBInstanceIdentifier"], DBParameterGroupName=group,
        ApplyImmediately=True,
    )  # fmt: skip
    # moto's DB instance model ignores VPCSecurityGroups: applied from the template
    rds.modify_db_instance(
        DBInstanceIdentifier=props["DBInstanceIdentifier"],
        VpcSecurityGroupIds=props["VPCSecurityGroups"],
        ApplyImmediately=True,
    )
    [db] = rds.describe_db_instances(DBInstanceIdentifier=props["DBInstanceIdentifier"])[
        "DBInstances"
    ]
    for key in (
        "DBInstanceClass",
        "Engine",
        "EngineVersion",
        "DBName",
        "StorageType",
        "StorageEncrypted",
        "PubliclyAccessible",
        "MultiAZ",
        "BackupRetentionPeriod",
        "AutoMinorVersionUpgrade",
        "DeletionProtection",
    ):
        assert db[key] == props[key], key
    assert (db["DBInstanceClass"], db["PubliclyAccessible"]) == ("db.t3.micro", False)
    assert db["AllocatedStorage"] == int(props["AllocatedStorage"]) == 20
    assert {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]} == {
        stack.physical["PrivateSubnetA"],
        stack.physical["PrivateSubnetB"],
    }
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [
        stack.physical["DatabaseSecurityGroup"]
    ]
    assert stack.output("DatabaseEndpoint") == db["Endpoint"]["Address"]
    assert [g["DBParameterGroupName"] for g in db["DBParameterGroups"]] == [group]
    # open to the function and the host only, on 3306
    [group] = aws("ec2").describe_security_groups(
        GroupIds=[stack.physical["DatabaseSecurityGroup"]]
    )["SecurityGroups"]
    sources = {
        (p["FromPort"], g["GroupId"]) for p in group["IpPermissions"] for g in p["UserIdGroupPairs"]
    }
    assert sources == {
        (3306, stack.physical["FunctionSecurityGroup"]),
        (3306, stack.physical["HostSecurityGroup"]),
    }
    assert all(not p["IpRanges"] for p in group["IpPermissions"])

    # The secret (no moto model): made from the template's GenerateSecretString and completed
    # as the attachment completes it (host, port); the handler reads that shape.
    generate = stack.t.properties("DatabaseSecret")["GenerateSecretString"]
    password = aws("secretsmanager").get_random_password(
        PasswordLength=generate["PasswordLength"],
        ExcludePunctuation=generate["ExcludePunctuation"],
    )["RandomPassword"]
    secret = json.loads(generate["SecretStringTemplate"]) | {
        generate["GenerateStringKey"]: password
    }
    secret |= {"host": db["Endpoint"]["Address"], "port": db["Endpoint"]["Port"]}
    url = load_handler().url_from_secret(json.dumps(secret))
    assert (url.host, url.port, url.database, url.user) == (
        db["Endpoint"]["Address"],
        3306,
        "tradepipe",
        "tradepipe",
    )
    assert secret["dbname"] == props["DBName"]
