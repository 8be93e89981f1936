"""A local stand-in for S3 -> Lambda: bucket notifications to an SQS queue, polled by workers
that call ``lambda/handler.py``'s ``handler(event, context)`` with the event S3 produced.

How it maps to AWS (docs/testing.md, "End-to-end tests and the soak run"):

- **Delivery.** The bucket's notification configuration sends ``s3:ObjectCreated:*`` under
  ``trades/`` with suffix ``.ndjson.gz`` to a queue on the moto server (moto builds the S3
  event JSON itself, as S3 does). Each message body is one S3 event, passed unchanged. S3's
  ``s3:TestEvent`` (sent when the configuration is set) is skipped, as Lambda ignores it.
- **Execution environments.** Each worker loads its own copy of the handler module (a cold
  start), so warm state (the database connection) is never shared between concurrent
  invocations -- as in Lambda, one environment runs one invocation at a time.
- **Asynchronous retries.** A failed invocation is retried like Lambda's asynchronous
  invocation: at most ``len(retry_delays)`` more times (Lambda: 2), after those delays (Lambda:
  about 1 and 2 minutes; scaled down here). The message is made visible again after the delay;
  its receive count says which attempt it is. After the last one it goes to the failure
  destination (a second queue) with the error, and :meth:`LocalLambda.redrive` sends it back --
  what an operator does after an outage (safe: the upsert is idempotent).
- **Faults on the invocation side.** :meth:`LocalLambda.pause` holds delivery (events queue up);
  :meth:`LocalLambda.take_all` + :meth:`LocalLambda.invoke` let a test deliver events in any
  order and any number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

Event = dict[str, Any]
NOTIFY_PREFIX, NOTIFY_SUFFIX = "trades/", ".ndjson.gz"


def configure_notifications(s3: Any, sqs: Any, bucket: str) -> tuple[str, str]:
    """Queue + failure queue for ``bucket`` and its ObjectCreated notification; their URLs."""
    queue = sqs.create_queue(QueueName=f"{bucket}-events")["QueueUrl"]
    failed = sqs.create_queue(QueueName=f"{bucket}-failed")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rules = [{"Name": "prefix", "Value": NOTIFY_PREFIX}, {"Name": "suffix", "Value": NOTIFY_SUFFIX}]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": rules}},
                }
            ]
        },
    )
    return queue, failed


def object_keys(event: Mapping[str, Any]) -> list[str]:
    """The (still URL-encoded) object keys an S3 event names."""
    return [r["s3"]["object"]["key"] for r in event.get("Records", [])]


@dataclass
class Stats:
    invocations: int = 0
    failures: int = 0
    retried: int = 0
    to_failure_destination: int = 0
    test_events: int = 0
    # object key (decoded) -> epoch seconds when its first successful invocation returned
    done_at: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class LocalLambda:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        failed_url: str,
        load_handler: Callable[[], ModuleType],
        *,
        workers: int = 2,
        retry_delays: Sequence[int] = (2, 4),
        poll_seconds: int = 1,
    ) -> None:
        self.sqs, self.queue_url, self.failed_url = sqs, queue_url, failed_url
        self.load_handler = load_handler
        self.workers = workers
        self.retry_delays = tuple(retry_delays)
        self.poll_seconds = poll_seconds
        self.stats = Stats()
        self.busy = 0
        self.last_activity = time.monotonic()
        self._running = asyncio.Event()
        self._running.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: list[ModuleType] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LocalLambda:
        for i in range(self.workers):
            module = await asyncio.to_thread(self.load_handler)
            self._handlers.append(module)
            self._tasks.append(asyncio.create_task(self._worker(module), name=f"lambda-{i}"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for module in self._handlers:
            store = getattr(module, "_Warm").store  # noqa: B009 -- the module's warm state
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # ------------------------------------------------------------------ the poll loop

    async def _worker(self, module: ModuleType) -> None:
        while True:
            await self._running.wait()
            resp = await asyncio.to_thread(
                self.sqs.receive_message,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=self.poll_seconds,
                VisibilityTimeout=120,
                AttributeNames=["ApproximateReceiveCount"],
            )
            for message in resp.get("Messages", []):
                self.busy += 1
                try:
                    await self._deliver(module, message)
                finally:
                    self.busy -= 1
                    self.last_activity = time.monotonic()

    async def _deliver(self, module: ModuleType, message: dict[str, Any]) -> None:
        event = json.loads(message["Body"])
        receipt = message["ReceiptHandle"]
        if event.get("Event") == "s3:TestEvent":
            self.stats.test_events += 1
            await asyncio.to_thread(self.sqs.delete_message, QueueUrl=self.queue_url,
                                    ReceiptHandle=receipt)  # fmt: skip
            return
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        error = await self._invoke(module, event)
        if error is None:
            await asyncio.to_thread(self.sqs.delete_message, QueueUrl=self.queue_url,
                                    ReceiptHandle=receipt)  # fmt: skip
        elif attempt <= len(self.retry_delays):  # Lambda's async retry, after a delay
            self.stats.retried += 1
            await asyncio.to_thread(
                self.sqs.change_message_visibility, QueueUrl=self.queue_url,
                ReceiptHandle=receipt, VisibilityTimeout=self.retry_delays[attempt - 1],
            )  # fmt: skip
        else:  # retries exhausted: the on-failure destination, with the error
            self.stats.to_failure_destination += 1
            body = json.dumps({"requestPayload": event, "error": error})
            await asyncio.to_thread(self.sqs.send_message, QueueUrl=self.failed_url,
                                    MessageBody=body)  # fmt: skip
            await asyncio.to_thread(self.sqs.delete_message, QueueUrl=self.queue_url,
                                    ReceiptHandle=receipt)  # fmt: skip

    async def _invoke(self, module: ModuleType, event: Event) -> str | None:
        """One invocation; the error text if the handler raised."""
        self.stats.invocations += 1
        try:
            await asyncio.to_thread(module.handler, event, None)
        except Exception as exc:
            self.stats.failures += 1
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}"
        now = time.time()
        for key in object_keys(event):
            self.stats.done_at.setdefault(urllib.parse.unquote_plus(key), now)
        return None

    # ------------------------------------------------------------------ test controls

    async def idle(self, quiet: float = 1.5, seconds: float = 120) -> None:
        """Until the queue is empty, nothing is in flight and nothing happened for ``quiet``."""
        async with asyncio.timeout(seconds):
            while True:
                attrs = await asyncio.to_thread(
                    self.sqs.get_queue_attributes, QueueUrl=self.queue_url,
                    AttributeNames=["ApproximateNumberOfMessages",
                                    "ApproximateNumberOfMessagesNotVisible"],
                )  # fmt: skip
                a = attrs["Attributes"]
                queued = int(a["ApproximateNumberOfMessages"])
                queued += int(a["ApproximateNumberOfMessagesNotVisible"])
                if not queued and not self.busy:
                    if time.monotonic() - self.last_activity >= quiet:
                        return
                await asyncio.sleep(0.2)

    async def take_all(self, quiet: float = 1.0) -> list[Event]:
        """Every event waiting in the queue (removed from it), until none came for ``quiet``.
        Call while paused; the test then delivers them with :meth:`invoke`."""
        events: list[Event] = []
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            resp = await asyncio.to_thread(
                self.sqs.receive_message, QueueUrl=self.queue_url,
                MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=600,
            )  # fmt: skip
            messages = resp.get("Messages", [])
            if not messages:
                await asyncio.sleep(0.1)
                continue
            last = time.monotonic()
            for m in messages:
                event = json.loads(m["Body"])
                if event.get("Event") != "s3:TestEvent":
                    events.append(event)
                await asyncio.to_thread(self.sqs.delete_message, QueueUrl=self.queue_url,
                                        ReceiptHandle=m["ReceiptHandle"])  # fmt: skip
        return events

    async def invoke(self, events: Sequence[Event]) -> list[str | None]:
        """Invoke the handler once per event, in this order, on the first environment."""
        return [await self._invoke(self._handlers[0], e) for e in events]

    async def redrive(self) -> int:
        """Send every event of the failure destination back to the queue; how many."""
        moved = 0
        while True:
            resp = await asyncio.to_thread(
                self.sqs.receive_message, QueueUrl=self.failed_url,
                MaxNumberOfMessages=10, WaitTimeSeconds=0,
            )  # fmt: skip
            messages = resp.get("Messages", [])
            if not messages:
                return moved
            for m in messages:
                payload = json.loads(m["Body"])["requestPayload"]
                await asyncio.to_thread(self.sqs.send_message, QueueUrl=self.queue_url,
                                        MessageBody=json.dumps(payload))  # fmt: skip
                await asyncio.to_thread(self.sqs.delete_message, QueueUrl=self.failed_url,
                                        ReceiptHandle=m["ReceiptHandle"])  # fmt: skip
                moved += 1
