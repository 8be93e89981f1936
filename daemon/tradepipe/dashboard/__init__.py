"""The built-in dashboard (the seed's QuickSight): charts of ``trade_minutes`` over time.

- :mod:`.queries`: read-only access to SQLite or MySQL, values as exact text;
- :mod:`.api`: the JSON API's parameters and response shape;
- :mod:`.server`: the aiohttp server for the page, its static files and the API;
- ``static/``: the page itself (plain HTML + JavaScript, Plotly served from the Python package).
"""

from tradepipe.dashboard.queries import MinuteReader, QueryError, open_reader
from tradepipe.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "MinuteReader", "QueryError", "open_reader"]
