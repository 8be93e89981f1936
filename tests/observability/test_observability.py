"""The shared service shell: JSON logs, /metrics + /healthz, sd_notify datagrams."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import uuid
from pathlib import Path

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from tradepipe.observability import (
    Health,
    MetricsServer,
    Notifier,
    configure_logging,
    watchdog_interval,
)


def test_logs_are_one_json_object_per_line_including_library_loggers() -> None:
    out = io.StringIO()
    configure_logging("info", out)
    structlog.get_logger("t").info("connected", symbol="btcusdt", conn=3)
    structlog.get_logger("t").debug("hidden")
    logging.getLogger("aiokafka").warning("broker %s gone", "b1")
    logging.getLogger("aiokafka").info("chatty library info is dropped")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["connected", "broker b1 gone"]
    assert lines[0]["symbol"] == "btcusdt" and lines[0]["level"] == "info"
    assert lines[1]["logger"] == "aiokafka" and lines[1]["level"] == "warning"
    assert all("timestamp" in line for line in lines)


def test_unknown_log_level_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'loud' is not one of"):
        configure_logging("loud")


async def test_metrics_are_parseable_and_healthz_follows_the_check() -> None:
    registry = CollectorRegistry()
    hits = Counter("tradepipe_test_hits", "test", ["symbol"], registry=registry)
    hits.labels("BTCUSDT").inc(3)
    state = {"health": Health(True)}
    async with (
        MetricsServer(registry, lambda: state["health"], "127.0.0.1:0") as server,
        aiohttp.ClientSession() as http,
    ):
        assert server.port != 0
        async with http.get(f"{server.url}/metrics") as resp:
            assert resp.status == 200
            families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
        sample = families["tradepipe_test_hits"].samples[0]
        assert sample.labels == {"symbol": "BTCUSDT"} and sample.value == 3
        async with http.get(f"{server.url}/healthz") as resp:
            assert resp.status == 200
        state["health"] = Health(False, "feed stalled for 31 s")
        async with http.get(f"{server.url}/healthz") as resp:
            assert resp.status == 503
            assert "feed stalled" in await resp.text()


@pytest.fixture
def datagram_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(2)
    return sock


def test_notifier_sends_datagrams_to_a_path_socket(datagram_socket: socket.socket) -> None:
    notifier = Notifier(datagram_socket.getsockname())
    assert notifier.ready("connected")
    assert notifier.watchdog()
    assert notifier.stopping()
    got = [datagram_socket.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=connected", "WATCHDOG=1", "STOPPING=1"]
    datagram_socket.close()


def test_notifier_supports_abstract_sockets() -> None:
    name = f"tradepipe-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier("@" + name).status("hello")
        assert sock.recv(4096) == b"STATUS=hello"


def test_notifier_without_socket_is_a_no_op_and_a_dead_socket_is_not_fatal(
    tmp_path: Path,
) -> None:
    assert not Notifier(None).ready()
    assert not Notifier(str(tmp_path / "nobody-listens")).ready()


def test_watchdog_interval_is_half_the_usec_and_respects_pid() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    mine = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 5.0
    assert watchdog_interval({**mine, "WATCHDOG_PID": "1"}) is None
