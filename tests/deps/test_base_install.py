"""The producer host's install: requirements/producer.txt (the base dependencies, pinned and
hashed) plus the package, in a throwaway venv. Its commands run; the commands of the other
roles stop with one line naming the extra to install, exit status 2, no traceback. And in this
(complete) environment, importing the producer's, the replay's and the core's modules loads none
of the other roles' libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.deps.locks import REQUIREMENTS, ROOT

from tradepipe.extras import NEEDS

OTHER_ROLES = ("plotly", "aiomysql", "pymysql", "aioboto3", "aiobotocore", "botocore", "boto3")


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is in the test extra: run `make venv`"
    return found


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only the producer's lock and the package (editable, no dependencies); uv
    takes the wheels from its cache when it has them."""
    venv = tmp_path_factory.mktemp("base") / "venv"
    python = venv / "bin" / "python"
    steps = [
        [uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv(), "pip", "install", "--quiet", "--python", str(python), "--require-hashes",
         "-r", str(REQUIREMENTS / "producer.txt")],
        [uv(), "pip", "install", "--quiet", "--python", str(python), "--no-deps", "-e", str(ROOT)],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(step, check=True, timeout=300)
    return venv


def tradepipe(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [str(venv / "bin" / "tradepipe"), *args],
        capture_output=True, text=True, env=env, cwd=venv, timeout=60, check=False,
    )  # fmt: skip


def test_the_base_install_holds_none_of_the_other_roles(base_venv: Path) -> None:
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    out = subprocess.run(
        [str(base_venv / "bin" / "python"), "-c", probe, *OTHER_ROLES, "orjson"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["produce", "replay", "aggregate"])
def test_the_base_commands_run(base_venv: Path, command: str) -> None:
    out = tradepipe(base_venv, command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: tradepipe {command} ")


def test_the_base_install_aggregates_a_file(base_venv: Path) -> None:
    """Not only --help: the core runs on the base install (and writes JSON with msgspec)."""
    sample = ROOT / "samples"
    files = sorted(p for p in sample.rglob("*") if p.suffix in (".ndjson", ".gz", ".csv"))
    assert files, f"no trade files under {sample}"
    out = tradepipe(base_venv, "aggregate", "--format", "jsonl", str(files[0]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('{"symbol":"'), out.stdout[:200]


@pytest.mark.parametrize("command", sorted(NEEDS))
@pytest.mark.parametrize("args", [(), ("--help",)])
def test_a_command_of_another_role_names_its_extra(
    base_venv: Path, command: str, args: tuple[str, ...]
) -> None:
    out = tradepipe(base_venv, command, *args)
    extra = NEEDS[command]
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == (
        f"tradepipe {command}: needs the '{extra}' extra: pip install 'tradepipe[{extra}]'\n"
    )


PRODUCER_IMPORTS = r"""
import importlib, pkgutil, sys
import tradepipe, tradepipe.cli
for package in ("core", "producer", "replay", "observability"):
    package = "tradepipe." + package
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        importlib.import_module(info.name)
for command in ("produce", "replay", "aggregate"):
    importlib.import_module("tradepipe.commands." + command)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:])))
"""


def test_the_producer_modules_import_none_of_the_other_roles() -> None:
    """In this environment, where all of them are installed: nothing imports them early."""
    out = subprocess.run(
        [sys.executable, "-c", PRODUCER_IMPORTS, *OTHER_ROLES],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []


CORE_IMPORTS = r"""
import importlib, pkgutil, sys
import tradepipe.core as core
for info in pkgutil.walk_packages(core.__path__, "tradepipe.core."):
    importlib.import_module(info.name)
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))))
"""


def test_the_core_imports_no_asyncio_network_aws_or_database_code() -> None:
    """The core is what the Lambda zip and every shell share: no I/O libraries (STYLE 1)."""
    shells = ("asyncio", "aiohttp", "aiokafka", "websockets", "structlog", "prometheus_client",
              "stamina", "pymysql", "sqlite3", *OTHER_ROLES)  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", CORE_IMPORTS, *shells],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
