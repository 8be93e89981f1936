"""``tradepipe verify``: prove stored minutes against the exchange, find holes, repair them.

The rules are in :mod:`tradepipe.core.checks` (pure: continuity, comparison, statuses) and
:mod:`tradepipe.verify.runner` (the run: ranges, repair, recording); :mod:`.exchange` asks the
exchange through the producer's REST client; :mod:`.metrics` writes the run's Prometheus
figures.
"""

from tradepipe.verify.exchange import Exchange, ExchangeError, open_exchange
from tradepipe.verify.runner import Report, Request, Verifier, default_until

__all__ = [
    "Exchange",
    "ExchangeError",
    "Report",
    "Request",
    "Verifier",
    "default_until",
    "open_exchange",
]
