"""Shell pieces every long-running tradepipe service shares.

- :mod:`.logs`: structlog JSON lines on stdout (journald keeps them);
- :mod:`.http`: an aiohttp server for ``/metrics`` (a prometheus-client registry) and
  ``/healthz`` (a pluggable check);
- :mod:`.sdnotify`: the systemd notification datagram protocol (``READY=1``, ``WATCHDOG=1``...).
"""

from tradepipe.observability.http import Health, HealthCheck, MetricsServer
from tradepipe.observability.logs import configure_logging
from tradepipe.observability.sdnotify import Notifier, watchdog_interval

__all__ = [
    "Health",
    "HealthCheck",
    "MetricsServer",
    "Notifier",
    "configure_logging",
    "watchdog_interval",
]
