"""docs/configuration.md's table is the one config.py generates; every key has a row; every
TRADEPIPE_* variable the deployment files mention is a real key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradepipe.config import SECTIONS, env_name
from tradepipe.config_table import BEGIN, COMMAND, END, description, main, render

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
# Files that set or document TRADEPIPE_* variables for a deployment.
DEPLOY_FILES = sorted(
    [
        *(ROOT / "systemd").iterdir(),
        *(ROOT / "vector").iterdir(),
        *(ROOT / "lambda").glob("*.py"),
        ROOT / "scripts" / "demo",
        DOC,
    ]
)
# Variables that are not tradepipe settings, each with who reads it.
NOT_KEYS = {
    "TRADEPIPE_VECTOR_GROUP_ID": "Vector's consumer group (vector/vector.toml reads it itself)",
    "TRADEPIPE_VECTOR_KEY_PREFIX": "Vector's key template (the layout; vector.toml reads it)",
    "TRADEPIPE_DB_SECRET_ID": "the Lambda's Secrets Manager alternative to TRADEPIPE_DB_URL",
}
VARIABLE = re.compile(r"\bTRADEPIPE_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def test_the_table_is_generated_from_config_py() -> None:
    current = DOC.read_text(encoding="utf-8")
    assert render(current) == current, f"docs/configuration.md is out of date; run: {COMMAND}"


def test_every_key_has_a_row_and_a_description() -> None:
    block = DOC.read_text(encoding="utf-8").partition(BEGIN)[2].partition(END)[0]
    rows = re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_]+)` \| `(TRADEPIPE_[A-Z0-9_]+)` \|", block, re.M)
    keys = [(f"{s}.{k}", env_name(s, k)) for s, section in SECTIONS.items() for k in section]
    assert rows == keys
    undescribed = [
        k for s, sec in SECTIONS.items() for k, hint in sec.items() if not description(hint)
    ]
    assert undescribed == []


def test_the_check_fails_on_drift_and_prints_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "configuration.md"
    text = DOC.read_text(encoding="utf-8")
    stale.write_text(re.sub(r"^\| `sink\.grace_seconds` .*\n", "", text, flags=re.M))
    assert main(["--check", str(stale)]) == 1
    assert COMMAND in capsys.readouterr().err
    assert main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert main(["--check", str(stale)]) == 0


def test_every_variable_in_the_deployment_files_is_a_key() -> None:
    keys = {env_name(s, k) for s, section in SECTIONS.items() for k in section}
    mentioned: dict[str, str] = {}
    for path in DEPLOY_FILES:
        for var in VARIABLE.findall(path.read_text(encoding="utf-8")):
            mentioned.setdefault(var, str(path.relative_to(ROOT)))
    unknown = {
        var: where
        for var, where in mentioned.items()
        if var not in keys and var not in NOT_KEYS and not var.startswith("TRADEPIPE_TEST_")
    }
    assert unknown == {}
    assert set(NOT_KEYS) <= set(mentioned), "an exception no file mentions any more: drop it"
    assert len(mentioned) > 10  # the scan found the files
