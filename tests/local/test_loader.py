"""The local Lambda: a database that is unreachable for a while loses nothing and stops nothing.

MariaDB is put behind a TCP forwarder on a port of our own: first nothing listens there
(connection refused, as when the server is down), then the forwarder starts and the very same
loader, never restarted, finishes the job with exactly the rows the core computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest
from tests.core.fuzzing import bad_lines
from tests.dashboard.helpers import THREE_SYMBOLS, expected_rows, trades_of

from tradepipe.core import to_event
from tradepipe.local.loader import ObjectLoader
from tradepipe.local.pipeline import migrate_db
from tradepipe.retry import RetryForever
from tradepipe.store import Store, connect, fetch_texts, parse_db_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def forwarder(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """A TCP forwarder that, on exit, closes every connection it made (no leaked sockets)."""
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        writers.append(client_w)
        server_r, server_w = await asyncio.open_connection(*target)
        writers.append(server_w)
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for w in writers:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        await server.wait_closed()


@pytest.mark.mysql
async def test_database_down_then_back_loses_nothing(mysql_db: str, tmp_path: Path) -> None:
    await asyncio.to_thread(migrate_db, mysql_db)
    parts = urlsplit(mysql_db)
    port = free_port()
    via_port = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}")
    )
    trades = trades_of(THREE_SYMBOLS)
    body = gzip.compress(b"".join(msgspec.json.encode(to_event(t)) + b"\n" for t in trades))
    loader = ObjectLoader(
        Store(via_port, attempts=2, timeout=2, wait_max=0.1),
        RetryForever(wait_initial=0.1, wait_max=0.3),
    )
    running = asyncio.create_task(loader.run())
    loader.submit("trades/symbol=BTCUSDT/date=2021-04-04/hour=20/minute=03/x.ndjson.gz", body)
    for _ in range(100):
        if loader.stats.failures >= 2:
            break
        await asyncio.sleep(0.1)
    assert loader.stats.failures >= 2 and loader.stats.objects == 0
    assert not running.done()  # the loader keeps trying; nothing crashed
    async with forwarder(port, (parts.hostname or "127.0.0.1", parts.port or 3306)):
        for _ in range(200):
            if loader.stats.objects == 1:
                break
            await asyncio.sleep(0.1)
        assert loader.stats.objects == 1
        assert loader.stats.added == len(trades)
        loader.close()
        await asyncio.wait_for(running, 10)
        await loader.close_store()
    assert loader.unloaded_keys() == []
    conn = connect(parse_db_url(mysql_db))
    try:
        stored = [tuple(r) for r in fetch_texts(conn)]
    finally:
        conn.close()
    assert stored == [r.texts() for r in expected_rows(trades)]


async def test_an_object_with_fuzzed_lines_loads_its_valid_trades_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    trades = trades_of(THREE_SYMBOLS)[:200]
    bad = bad_lines(seed=23, count=300)
    body = gzip.compress(b"".join(msgspec.json.encode(to_event(t)) + b"\n" for t in trades)
                         + b"\n".join(bad) + b"\n")  # fmt: skip
    db = f"sqlite:///{tmp_path / 'local.db'}"
    migrate_db(db)
    loader = ObjectLoader(Store(parse_db_url(db)))
    loader.submit("trades/fuzzed.ndjson.gz", body)
    loader.close()
    await asyncio.wait_for(loader.run(), 60)
    await loader.close_store()
    assert (loader.stats.trades, loader.stats.rejected) == (200, 300)
    assert sum(loader.stats.rejected_by_reason.values()) == 300
    conn = connect(parse_db_url(db))
    try:
        stored = [tuple(r) for r in fetch_texts(conn)]
    finally:
        conn.close()
    assert stored == [r.texts() for r in expected_rows(trades)]
