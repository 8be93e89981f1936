"""The systemd notification protocol (``sd_notify(3)``), without libsystemd.

A service started with ``Type=notify`` finds ``$NOTIFY_SOCKET``: a unix *datagram* socket path,
or an abstract-namespace name when it starts with ``@`` (the ``@`` stands for a leading NUL
byte). Each notification is one datagram of newline-separated ``KEY=VALUE`` assignments:
``READY=1`` (start-up done), ``STOPPING=1`` (shutting down), ``WATCHDOG=1`` (keep-alive, due
at least every ``$WATCHDOG_USEC`` microseconds), ``STATUS=free text``.

Outside systemd (no socket) every call is a no-op, so the same code runs by hand and in tests.
Send failures are logged and swallowed: a notification must never take the service down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between keep-alives: half of ``$WATCHDOG_USEC``, or ``None`` if not asked.

    ``$WATCHDOG_PID``, when set, must name this process (systemd sets it for the main PID only).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wpid = environ.get("WATCHDOG_PID", "")
    if wpid and wpid != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """Sends ``sd_notify`` datagrams to ``address`` (``$NOTIFY_SOCKET``); no-op when ``None``."""

    def __init__(self, address: str | None) -> None:
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="connected")``); True if sent."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:  # a socket per datagram: a few per minute, and nothing to leak or close
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full socket drops this one, never blocks the loop
                sock.sendto(payload, self.address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc), fields=sorted(fields))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)
