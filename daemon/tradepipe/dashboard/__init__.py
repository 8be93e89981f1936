"""The built-in dashboard (the seed's QuickSight): charts of ``trade_minutes`` over time.

- :mod:`.reader`: the store's read-only queries (:mod:`tradepipe.store.reads`) off the event
  loop;
- :mod:`.api`: the JSON API's parameters and response shape;
- :mod:`.server`: the aiohttp server for the page, its static files and the API;
- ``static/``: the page itself (plain HTML + JavaScript, Plotly served from the Python package).
"""

from tradepipe.dashboard.reader import MinuteReader, open_reader
from tradepipe.dashboard.server import DashboardServer
from tradepipe.store.reads import QueryError

__all__ = ["DashboardServer", "MinuteReader", "QueryError", "open_reader"]
