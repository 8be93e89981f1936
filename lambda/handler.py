"""AWS Lambda: S3 ``ObjectCreated`` -> exact, idempotent per-minute rows in MySQL.

Deployed as ``handler.handler`` from ``dist/lambda.zip`` (``make lambda-zip``), which holds this
file, ``tradepipe.core``, ``tradepipe.store`` and their drivers; boto3 comes with the runtime.

For every record of the event: the key is URL-decoded as S3 sends it (``+`` for space, ``%xx``),
the object is read (gzip or plain NDJSON, or data-dump CSV), its trades are upserted in one
transaction by :class:`tradepipe.store.Store` (exactness rules: ``tradepipe/store/upsert.py``).
Bad lines (every :class:`tradepipe.core.ParseError`: the rules are in ``tradepipe/core/parse.py``)
never raise: they are counted, logged by reason and copied (each capped at 64 KiB) to
``rejected/<key>`` (``.gz`` dropped) in the same bucket *after* the upsert, so the good lines
count even if that put fails (the retry of the event then upserts nothing new and puts
again). A missing or unreadable object, a truncated gzip or a database failure raises, so
Lambda retries the event and finally hands it to the failure destination; a retry is
harmless because the upsert is idempotent.

Environment:
    TRADEPIPE_DB_URL           mysql://user:password@host:port/db
    TRADEPIPE_DB_SECRET_ID     instead: a Secrets Manager secret whose string is that URL, or
                               RDS's JSON (username, password, host, port, dbname)
    TRADEPIPE_S3_ENDPOINT_URL  optional: an S3-compatible endpoint (tests, MinIO)
    TRADEPIPE_LOG_LEVEL        optional: INFO (default), DEBUG, WARNING, ...

The database connection opens on first use and is reused by warm invocations (checked with a
ping, reopened if it went away). Nothing secret is logged: URLs print without the password.

Every wait on the database is bounded by the invocation's deadline: the remaining time
(``context.get_remaining_time_in_millis()``; 60 s, the documented timeout, when there is no
context) less ``DEADLINE_MARGIN_S``. The connect, the handshake, the ping of a warm connection
and every statement get the time left as their socket timeouts, so a database that accepts the
connection and never answers, or a warm connection gone half-open, fails with
:class:`tradepipe.store.DeadlineExceeded` (nothing committed) before Lambda's own timeout: the
invocation raises, and Lambda's retry -- on this environment, with a new connection -- is the
one that happens, instead of a timed-out invocation.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import pymysql

from tradepipe.core import Rejected, decompress
from tradepipe.core.batch import read_batch
from tradepipe.core.layout import REJECTED_PREFIX
from tradepipe.store import DbUrl, Store, parse_db_url

# pymysql's "Access denied": the cached secret may have been rotated.
ACCESS_DENIED = 1045
# The invocation gives up on the database this long before Lambda's timeout.
DEADLINE_MARGIN_S = 1.0
# The remaining time assumed when called without a Lambda context (the documented timeout).
DEFAULT_REMAINING_MS = 60_000


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, message and the fields passed in ``extra``."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"level": record.levelname.lower(), "msg": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time (CloudWatch takes it from there)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def _logger() -> logging.Logger:
    log = logging.getLogger("tradepipe.lambda")
    if not log.handlers:
        out = _Stdout()
        out.setFormatter(JsonFormatter())
        log.addHandler(out)
        log.propagate = False  # the runtime's root handler would print it a second time
    log.setLevel(os.environ.get("TRADEPIPE_LOG_LEVEL", "INFO").upper())
    return log


log = _logger()


@dataclass(frozen=True, slots=True)
class Config:
    db_url: str | None
    db_secret_id: str | None
    s3_endpoint_url: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Config:
        url = environ.get("TRADEPIPE_DB_URL", "").strip() or None
        secret = environ.get("TRADEPIPE_DB_SECRET_ID", "").strip() or None
        if url is None and secret is None:
            raise RuntimeError("set TRADEPIPE_DB_URL or TRADEPIPE_DB_SECRET_ID")
        endpoint = environ.get("TRADEPIPE_S3_ENDPOINT_URL", "").strip() or None
        return cls(db_url=url, db_secret_id=secret, s3_endpoint_url=endpoint)


class _Warm:
    """What survives between warm invocations: config, clients and the store."""

    config: Config | None = None
    s3: Any = None
    store: Store | None = None


def url_from_secret(secret: str) -> DbUrl:
    """A secret string holding the URL, or RDS's JSON secret shape."""
    text = secret.strip()
    if not text.startswith("{"):
        return parse_db_url(text)
    obj = json.loads(text)
    if "url" in obj:
        return parse_db_url(str(obj["url"]))
    user = urllib.parse.quote(str(obj["username"]), safe="")
    password = urllib.parse.quote(str(obj["password"]), safe="")
    return parse_db_url(
        f"mysql://{user}:{password}@{obj['host']}:{obj.get('port', 3306)}/{obj['dbname']}"
    )


def _store(config: Config) -> Store:
    if _Warm.store is None:
        if config.db_url is not None:
            url = parse_db_url(config.db_url)
        else:
            sm = boto3.client("secretsmanager")
            secret = sm.get_secret_value(SecretId=config.db_secret_id)["SecretString"]
            url = url_from_secret(secret)
        _Warm.store = Store(url)
        log.info("database configured", extra={"db": str(url)})
    return _Warm.store


def _s3(config: Config) -> Any:
    if _Warm.s3 is None:
        _Warm.s3 = boto3.client("s3", endpoint_url=config.s3_endpoint_url)
    return _Warm.s3


def rejected_key(key: str) -> str:
    """Where an object's rejected lines go: ``rejected/<key>``, plain NDJSON."""
    return REJECTED_PREFIX + key.removesuffix(".gz")


def deadline_of(context: Any) -> float:
    """The invocation's deadline (``time.monotonic()``): its remaining time less the margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    remaining_ms = remaining() if callable(remaining) else DEFAULT_REMAINING_MS
    return time.monotonic() + remaining_ms / 1000 - DEADLINE_MARGIN_S


def process_record(
    record: Mapping[str, Any], config: Config, deadline: float | None = None
) -> dict[str, Any]:
    """One S3 event record -> its object's trades upserted; a summary for the log."""
    bucket = record["s3"]["bucket"]["name"]
    key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
    if key.startswith(REJECTED_PREFIX):
        log.warning("skipping our own rejected/ copy", extra={"bucket": bucket, "key": key})
        return {"key": key, "skipped": True}
    started = time.perf_counter()
    get: dict[str, Any] = {"Bucket": bucket, "Key": key}
    version = record["s3"]["object"].get("versionId")
    if version:
        get["VersionId"] = version
    body = _s3(config).get_object(**get)["Body"].read()  # missing/unreadable: raises
    data = decompress(body, f"s3://{bucket}/{key}")  # truncated gzip: SourceError
    # the parser's fields, no Trade per line (tradepipe/core/batch.py)
    trades, rejected = read_batch(data, key, None, int(time.time() * 1000))
    result = _store(config).upsert(trades, deadline=deadline)
    if rejected:  # after the upsert: a failed quarantine put never holds back good trades
        _quarantine(config, bucket, key, rejected)
    summary = {
        "bucket": bucket,
        "key": key,
        "trades": result.trades,
        "added": result.added,
        "duplicates": result.duplicates,
        "rows": result.rows,
        "rejected": len(rejected),
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    log.info("object stored", extra=summary)
    return summary


def _quarantine(config: Config, bucket: str, key: str, rejected: list[Rejected]) -> None:
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r.error.reason] = reasons.get(r.error.reason, 0) + 1
    target = rejected_key(key)
    _s3(config).put_object(
        Bucket=bucket,
        Key=target,
        Body=b"".join(r.raw + b"\n" for r in rejected),
        ContentType="application/x-ndjson",
    )
    first = rejected[0]
    log.warning(
        "rejected lines copied",
        extra={
            "key": key,
            "rejected_key": target,
            "rejected": len(rejected),
            "reasons": reasons,
            "first": f"line {first.lineno}: {first.error}",
        },
    )


def _access_denied(exc: BaseException) -> bool:
    return isinstance(exc, pymysql.OperationalError) and exc.args[:1] == (ACCESS_DENIED,)


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: every record of an S3 event; raises to have Lambda retry."""
    if _Warm.config is None:
        _Warm.config = Config.from_environ(os.environ)
    config = _Warm.config
    deadline = deadline_of(context)
    records = event.get("Records") or []
    summaries = []
    for record in records:
        if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith(
            "ObjectCreated:"
        ):
            log.info("ignoring record", extra={"event_name": record.get("eventName")})
            continue
        try:
            summaries.append(process_record(record, config, deadline))
        except Exception as exc:
            log.exception("object failed", extra={"key": record["s3"]["object"]["key"]})
            if _access_denied(exc) and config.db_secret_id and _Warm.store is not None:
                _Warm.store.close()
                _Warm.store = None  # the secret may have rotated: read it again next time
            raise
    return {
        "objects": len(summaries),
        "trades": sum(s.get("trades", 0) for s in summaries),
        "added": sum(s.get("added", 0) for s in summaries),
        "rejected": sum(s.get("rejected", 0) for s in summaries),
    }
