"""dist/lambda.zip, unpacked into a fresh virtualenv holding none of tradepipe's dependencies
(only boto3, as the Lambda runtime has it), runs an S3 event against MariaDB and the S3 server."""

from __future__ import annotations

import gzip
import importlib.metadata as md
import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from tests.core.fuzzing import bad_lines
from tests.deps.locks import REQUIREMENTS, read_lock
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

BOTO3_CLOSURE = ("boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six", "urllib3")
ALLOWED_TOP = {"handler.py", "tradepipe", "pymysql", "msgspec", "stamina", "tenacity"}

PROBE = r"""
import faulthandler, importlib, json, sys
faulthandler.dump_traceback_later(60, exit=True)  # a hang shows where, then fails the test
ABSENT = ("orjson", "structlog", "aiokafka", "aioboto3", "aiomysql", "websockets",
          "prometheus_client")
for absent in ABSENT:
    try:
        importlib.import_module(absent)
    except ImportError:
        continue
    sys.exit(f"{absent} is importable: not a clean environment")
import handler, tradepipe
assert tradepipe.__file__.startswith(sys.argv[1]), tradepipe.__file__
event = json.load(sys.stdin)
print("RESULT " + json.dumps(handler.handler(event, None)))
print("RESULT " + json.dumps(handler.handler(event, None)))  # warm: nothing new
"""


def build_zip(out: Path) -> Path:
    subprocess.run([sys.executable, str(ROOT / "lambda" / "build_zip.py"), str(out)], check=True)
    return out


def boto3_site(target: Path) -> Path:
    """boto3 and its dependencies only, linked from this environment (no network)."""
    target.mkdir()
    for name in BOTO3_CLOSURE:
        dist = md.distribution(name)
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:  # no top_level.txt: take the first path component of its files
            tops = sorted({f.parts[0] for f in dist.files or () if ".dist-info" not in f.parts[0]})
        for top in tops:
            base = Path(str(dist.locate_file(""))) / top
            for candidate in (base, base.with_suffix(".py")):
                if candidate.exists() and not (target / candidate.name).exists():
                    (target / candidate.name).symlink_to(candidate)
    return target


def test_zip_contents_and_size(tmp_path: Path) -> None:
    zipped = build_zip(tmp_path / "lambda.zip")
    names = zipfile.ZipFile(zipped).namelist()
    assert "handler.py" in names  # handler.handler at the root
    tops = {n.split("/")[0] for n in names if ".dist-info" not in n.split("/")[0]}
    assert tops == ALLOWED_TOP
    assert not any(n.startswith(("tradepipe/commands", "tradepipe/producer")) for n in names)
    assert not any("boto3" in n or "__pycache__" in n for n in names)
    assert zipped.stat().st_size < 1_000_000
    assert build_zip(tmp_path / "again.zip").read_bytes() == zipped.read_bytes()  # reproducible


def test_zip_ships_exactly_the_lambda_lock(tmp_path: Path) -> None:
    """The distributions in the zip are requirements/lambda.txt's pins, name and version."""
    names = zipfile.ZipFile(build_zip(tmp_path / "lambda.zip")).namelist()
    infos = {n.split("/")[0].removesuffix(".dist-info") for n in names if ".dist-info/" in n}
    shipped = {(canonicalize_name(i.rsplit("-", 1)[0]), i.rsplit("-", 1)[1]) for i in infos}
    pins = read_lock(REQUIREMENTS / "lambda.txt")
    assert shipped == {(name, str(pin.version)) for name, pin in pins.items()}


def run_zip(
    tmp_path: Path,
    db: str,
    s3_client_kwargs: dict[str, str],
    stdin: str,
    probe: str = PROBE,
    extra_env: dict[str, str] | None = None,
) -> str:
    """dist/lambda.zip unpacked as Lambda does, ``probe`` run in a fresh venv holding only boto3
    (``sys.argv[1]`` is the task folder, ``stdin`` its input); its stdout."""
    task = tmp_path / "task"  # what Lambda unpacks to /var/task
    zipfile.ZipFile(build_zip(tmp_path / "lambda.zip")).extractall(task)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "boto3-runtime.pth").write_text(str(boto3_site(tmp_path / "runtime")) + "\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(task),
        "TRADEPIPE_DB_URL": db,
        "TRADEPIPE_S3_ENDPOINT_URL": s3_client_kwargs["endpoint_url"],
        "AWS_ACCESS_KEY_ID": s3_client_kwargs["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_client_kwargs["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": s3_client_kwargs["region_name"],
        **(extra_env or {}),
    }
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, str(task)],
        input=stdin, capture_output=True, text=True, env=env,
        cwd=task, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def tagged(stdout: str, tag: str) -> list[Any]:
    """The JSON values of the probe's lines starting with ``tag``."""
    return [json.loads(line[len(tag) :]) for line in stdout.splitlines() if line.startswith(tag)]


def run_packaged(
    tmp_path: Path, db: str, s3_client_kwargs: dict[str, str], event: dict[str, Any]
) -> list[dict[str, Any]]:
    """dist/lambda.zip run twice (cold, warm) on ``event``; the handler's two return values."""
    return tagged(run_zip(tmp_path, db, s3_client_kwargs, json.dumps(event)), "RESULT ")


def test_zip_runs_in_a_fresh_venv(
    tmp_path: Path, s3: Any, bucket: str, db: str, s3_client_kwargs: dict[str, str]
) -> None:
    btc, eth = real_trades(BTC_FILE), real_trades(ETH_FILE)
    keys = ["trades/symbol=BTCUSDT/date=2021-04-04/hour=20/minute=03/zip test.ndjson.gz",
            "trades/symbol=ETHUSDT/date=2021-04-04/hour=20/minute=03/zip.ndjson.gz"]  # fmt: skip
    for key, trades in zip(keys, (btc, eth), strict=True):
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(ndjson(trades) + b"bad\n"))
    results = run_packaged(tmp_path, db, s3_client_kwargs, s3_event(bucket, keys))
    assert results[0] == {
        "objects": 2,
        "trades": len(btc) + len(eth),
        "added": len(btc) + len(eth),
        "rejected": 2,
    }
    assert results[1]["added"] == 0
    assert stored(db) == expected(btc + eth)


def test_zip_stores_the_valid_trades_of_an_object_full_of_fuzzed_lines(
    tmp_path: Path, s3: Any, bucket: str, db: str, s3_client_kwargs: dict[str, str]
) -> None:
    btc = real_trades(BTC_FILE)
    bad = bad_lines(seed=21, count=2500)  # unicode digits, NaN, huge ints, nesting, bad UTF-8...
    lines = ndjson(btc).splitlines() + bad
    random.Random(2).shuffle(lines)
    key = "trades/symbol=BTCUSDT/date=2021-04-04/hour=20/minute=03/fuzzed.ndjson.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"\n".join(lines) + b"\n"))
    cold, warm = run_packaged(tmp_path, db, s3_client_kwargs, s3_event(bucket, [key]))
    assert cold == {"objects": 1, "trades": len(btc), "added": len(btc), "rejected": len(bad)}
    assert warm == {"objects": 1, "trades": len(btc), "added": 0, "rejected": len(bad)}
    assert stored(db) == expected(btc)
    copied = s3.get_object(Bucket=bucket, Key="rejected/" + key.removesuffix(".gz"))["Body"]
    assert sorted(copied.read().splitlines()) == sorted(b[:65536] for b in bad)  # capped
