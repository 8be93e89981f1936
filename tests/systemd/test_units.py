"""``systemd/tradepipe-producer.service``: parsed and checked key by key everywhere; verified and
security-rated by ``systemd-analyze`` where it exists (it is part of Debian's ``systemd``
package; under ``CI=true`` its absence fails the test rather than skipping it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "tradepipe-producer.service"
ENV_EXAMPLE = ROOT / "systemd" / "tradepipe.env.example"


def unit_sections() -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def test_unit_has_the_lifecycle_and_hardening_the_issue_asks_for() -> None:
    svc = unit_sections()["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify"
    assert one["Restart"] == "on-failure"
    assert int(one["WatchdogSec"]) >= 10  # the daemon pings every WatchdogSec/2
    assert int(one["TimeoutStopSec"]) > 20  # > the producer's own 20 s flush limit
    assert one["EnvironmentFile"].endswith("tradepipe.env")
    assert one["ExecStart"].endswith("tradepipe produce")
    for key in (
        "DynamicUser",
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert one["CapabilityBoundingSet"] == ""
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # the quarantine file must be somewhere writable under ProtectSystem=strict
    assert "StateDirectory" in one
    assert "/var/lib/tradepipe/" in " ".join(svc["Environment"])  # fmt: skip


def test_env_example_only_sets_known_settings() -> None:
    from tradepipe.config import Settings

    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    settings = Settings.load(None, values)  # raises on an invalid value
    assert settings.feed.symbols == ["btcusdt"]
    assert all(k.startswith("TRADEPIPE_") for k in values)


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        msg = "systemd-analyze not installed (Debian package `systemd`)"
        unavailable(msg)
    return path


@pytest.fixture
def installable_unit(tmp_path: Path) -> Path:
    """The unit with paths of this machine (verify checks that ExecStart exists)."""
    exe = Path(sys.executable).parent / "tradepipe"
    env_file = tmp_path / "tradepipe.env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    text = UNIT.read_text()
    text = text.replace("/opt/tradepipe/venv/bin/tradepipe", str(exe))
    text = text.replace("/etc/tradepipe/tradepipe.env", str(env_file))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    return unit


def test_systemd_analyze_verify_passes_cleanly(installable_unit: Path) -> None:
    tool = _systemd_analyze()
    res = subprocess.run([tool, "verify", str(installable_unit)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    own = [line for line in res.stderr.splitlines() if installable_unit.name in line]
    assert not own, "\n".join(own)  # no warnings about our unit (unknown keys, bad values)


def test_systemd_analyze_security_rates_it_ok_or_better(installable_unit: Path) -> None:
    tool = _systemd_analyze()
    res = subprocess.run([tool, "security", "--offline=true", str(installable_unit)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    line = next(x for x in res.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":")[1].split()[0])
    rating = line.split(":")[1].split()[1]
    assert rating in ("OK", "SAFE"), line
    assert score <= 2.0, line
