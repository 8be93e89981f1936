"""The one signal policy of every long-running command (produce, sink, run, replay, dashboard).

SIGTERM (systemd's stop, ``kill``) and SIGINT (Ctrl-C) only set the command's stop flag; the
service then shuts down in its own order, bounded by its own time limit (well inside systemd's
``TimeoutStopSec``). A second signal while stopping is ignored: the flag is already set and the
shutdown is already bounded, so an impatient Ctrl-C cannot cut a flush short and lose what it
was writing; SIGKILL is the way to force a stop (the services are built to resume after one).
"""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: asyncio.Event) -> None:
    """From now on, SIGTERM and SIGINT set ``stop`` (call it from the running event loop)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
