"""Which optional dependencies (pyproject.toml's extras) each command needs.

The base install (``pip install tradepipe``) is what ``tradepipe produce``, ``replay`` and
``aggregate`` need: the producer host's. The other commands need an extra and, without it, stop
before importing anything with one line naming it and exit status 2 (never a traceback):

| command | extra | modules checked |
|---|---|---|
| ``migrate``, ``load``, ``verify`` | ``db`` | pymysql |
| ``export`` | ``export`` | pyarrow, tqdm, pymysql |
| ``sink`` | ``sink`` | aioboto3, botocore |
| ``dashboard`` | ``dashboard`` | plotly, numpy, scipy, and the export extra's |
| ``run`` | ``local`` | all of the above |

``MODULES`` names the top-level modules each extra's distributions install; tests/deps checks
it against pyproject.toml, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib.util

_DB = ("pymysql",)
_SINK = ("aioboto3", "botocore")
_EXPORT = ("pyarrow", "tqdm", *_DB)
_DASHBOARD = ("plotly", "numpy", "scipy", *_EXPORT)

MODULES: dict[str, tuple[str, ...]] = {
    "db": _DB,
    "sink": _SINK,
    "export": _EXPORT,
    "dashboard": _DASHBOARD,
    "local": (*_SINK, *_DASHBOARD),
}

NEEDS: dict[str, str] = {
    "migrate": "db",
    "load": "db",
    "verify": "db",
    "export": "export",
    "sink": "sink",
    "dashboard": "dashboard",
    "run": "local",
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in MODULES[extra] if importlib.util.find_spec(name) is None]


def missing_extra(command: str) -> str | None:
    """The one-line message for a command whose extra is not installed, else None."""
    extra = NEEDS.get(command)
    if extra is None or not missing(extra):
        return None
    return f"tradepipe {command}: needs the '{extra}' extra: pip install 'tradepipe[{extra}]'"
