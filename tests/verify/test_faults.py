"""verify's exchange access under faults: REST answering 429 (with ``Retry-After``) or 5xx for
a while is waited out and the repair completes exactly; an exchange that never answers is an
:class:`ExchangeError` once the bounded retries are spent (exit status 1), nothing written."""

from __future__ import annotations

import socket
import time

import aiohttp
import pytest
from tests.replay.helpers import StartEmulator
from tests.store.helpers import expected, stored
from tests.verify.helpers import by_minute, load, sample_tape, verify

from tradepipe.core import minute_of
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.rest import AggTradesClient
from tradepipe.replay import tape_of
from tradepipe.verify import Exchange, ExchangeError


@pytest.mark.parametrize(("status", "retry_after"), [(429, 1), (503, 0)])
async def test_repair_waits_out_a_failing_rest_and_ends_exact(
    db_url: str, start_emulator: StartEmulator, status: int, retry_after: int
) -> None:
    tape = sample_tape()
    minutes = by_minute(tape.trades)
    m = sorted(minutes)[:3]
    trades = [t for t in tape.trades if minute_of(t.time_ms) in m]
    removed = {trades[i].agg_id for i in (10, 400, 401, 1500)}
    load(db_url, [t for t in trades if t.agg_id not in removed])
    async with start_emulator(tape_of(trades), speed=0, start_now=True) as emu:
        await emu.finished.wait()
        emu.rest.fail(status, seconds=1.5, retry_after=retry_after)  # aggTrades only
        started = time.monotonic()
        report = await verify(db_url, emu.rest_url, m[0], m[-1], repair=True)
        assert emu.rest.failed_requests > 0  # the repair did meet the fault
    assert report.all_exact and report.trades_repaired == len(removed)
    assert stored(db_url) == expected(trades)
    assert time.monotonic() - started >= 1.0  # it waited rather than gave up


async def test_an_exchange_that_never_answers_is_an_error_after_bounded_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        client = AggTradesClient(f"http://127.0.0.1:{port}", session, ProducerMetrics(), 6000)
        exchange = Exchange(client, attempts=3, timeout=10, wait_initial=0.01)
        with pytest.raises(ExchangeError, match="klines BTCUSDT"):
            await exchange.klines("BTCUSDT", 0, 60_000)
    assert exchange.requests == 3
