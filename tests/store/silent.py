"""A TCP server on 127.0.0.1 standing between a MySQL client and MariaDB that can go silent.

It speaks nothing itself: it accepts, and per ``mode``

- ``"mute"``: never sends a byte (a database that accepts the connection and never answers);
- ``"greet"``: passes on MariaDB's greeting packet, then nothing (the handshake starts, then
  silence);
- ``"forward"``: passes bytes both ways.

:meth:`Silent.silence_open` makes every connection open now stop answering, as a warm
connection does when the path to the server dies without a FIN or RST (half-open): what the
client sends is read and dropped, nothing comes back, the socket stays open. New connections
still follow ``mode``, which a test may change at any time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class _Pair:
    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.muted = threading.Event()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class Silent:
    def __init__(self, mode: str, upstream: tuple[str, int] | None = None) -> None:
        assert mode in ("mute", "greet", "forward")
        self.mode, self.upstream = mode, upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True, name="silent-accept").start()

    def __enter__(self) -> Silent:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def url(self, db_url: str) -> str:
        """``db_url`` (mysql://user:pw@host:port/db) pointed at this server instead."""
        scheme, rest = db_url.split("://", 1)
        creds, tail = rest.rsplit("@", 1)
        database = tail.split("/", 1)[1]
        return f"{scheme}://{creds}@127.0.0.1:{self.port}/{database}"

    def silence_open(self) -> None:
        with self._lock:
            for pair in self._pairs:
                pair.muted.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for pair in self._pairs:
                pair.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            pair = _Pair(client)
            with self._lock:
                self._pairs.append(pair)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(pair, self.mode), daemon=True).start()

    def _serve(self, pair: _Pair, mode: str) -> None:
        try:
            if mode == "mute":
                pair.muted.set()
            else:
                assert self.upstream is not None
                pair.upstream = socket.create_connection(self.upstream, timeout=10)
                pair.upstream.settimeout(None)
                if mode == "greet":
                    header = _recv_exact(pair.upstream, 4)
                    length = int.from_bytes(header[:3], "little")
                    pair.client.sendall(header + _recv_exact(pair.upstream, length))
                    pair.muted.set()
                else:
                    threading.Thread(
                        target=self._pump, args=(pair, pair.upstream, pair.client), daemon=True
                    ).start()
            self._pump(pair, pair.client, pair.upstream)
        except OSError:
            pair.close()

    @staticmethod
    def _pump(pair: _Pair, src: socket.socket, dst: socket.socket | None) -> None:
        """``src`` -> ``dst`` until either closes; dropped once the pair is muted."""
        try:
            while chunk := src.recv(65536):
                if dst is not None and not pair.muted.is_set():
                    dst.sendall(chunk)
        except OSError:
            pass
        pair.close()
