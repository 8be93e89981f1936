"""The core imports nothing asynchronous, networked or cloud-specific.

The Lambda ships it alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = (
    "asyncio",
    "websockets",
    "aiokafka",
    "aiohttp",
    "aioboto3",
    "aiobotocore",
    "boto3",
    "botocore",
    "aiomysql",
    "socket",
    "ssl",
    "http",
    "urllib.request",
    "structlog",
    "prometheus_client",
)


def test_core_imports_nothing_async_or_networked() -> None:
    code = (
        "import sys, importlib, pkgutil\n"
        "import tradepipe.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module('tradepipe.core.' + m.name)\n"
        f"F = {FORBIDDEN!r}\n"
        "bad = sorted(n for n in sys.modules if n in F or n.split('.')[0] in F)\n"
        "print(','.join(bad))\n"
    )
    root = Path(__file__).resolve().parents[2] / "daemon"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(root)},
    )
    assert out.stdout.strip() == "", f"the core pulled in: {out.stdout.strip()}"
