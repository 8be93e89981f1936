"""Reading pyproject.toml's requirements by role and the lock files in requirements/."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent.parent
REQUIREMENTS = ROOT / "requirements"
PROJECT = "tradepipe"
# the environment every lock must install in: `make test`'s and the Lambda's (CPython 3.11,
# x86_64 Linux); markers are evaluated for it
TARGET = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "extra": ""}  # fmt: skip
# each lock and the extras of pyproject.toml it holds (None: requirements/lambda.in instead)
LOCKS: dict[str, tuple[str, ...] | None] = {
    "producer.txt": (),
    "sink.txt": ("sink",),
    "local.txt": ("local",),
    "test.txt": ("test",),
    "lambda.txt": None,
}


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def requirements_of(extras: tuple[str, ...]) -> list[Requirement]:
    """The base requirements plus those of ``extras``, self-references (``tradepipe[db]``)
    followed, each requirement once."""
    project = pyproject()
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    base: list[str] = project["dependencies"]  # type: ignore[assignment]
    out = [Requirement(r) for r in base]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def direct_requirements(extra: str) -> list[Requirement]:
    """The requirements an extra names itself or through self-references, without the base."""
    base = {str(r) for r in requirements_of(())}
    return [r for r in requirements_of((extra,)) if str(r) not in base]


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    hashes: int


def read_lock(path: Path) -> dict[str, Pin]:
    """``name==version`` entries whose marker holds on TARGET, with their hash count."""
    pins: dict[str, Pin] = {}
    current: Requirement | None = None
    hashes = 0

    def close() -> None:
        if current is not None and (current.marker is None or current.marker.evaluate(TARGET)):
            (spec,) = current.specifier
            assert spec.operator == "==", f"{path.name}: {current} is not pinned with =="
            name = canonicalize_name(current.name)
            pins[name] = Pin(name, Version(spec.version), hashes)

    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip().removesuffix("\\").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            hashes += 1
            continue
        assert not line.startswith("-"), f"{path.name}: unexpected option {line!r}"
        close()
        current, hashes = Requirement(line), 0
    close()
    return pins


def lambda_inputs() -> list[Requirement]:
    lines = (REQUIREMENTS / "lambda.in").read_text().splitlines()
    return [Requirement(x) for x in (line.split("#", 1)[0].strip() for line in lines) if x]
