"""The units in ``systemd/`` (producer, sink, Vector, verify and its timer): parsed and checked
key by key everywhere; verified and security-rated by ``systemd-analyze`` where it exists (it is
part of Debian's ``systemd`` package; under ``CI=true`` its absence fails the test rather than
skipping it).

All four services carry the producer's hardening (``HARDENING``), a memory limit, and
``ProtectSystem=strict`` with the one directory each writes (``StateDirectory=``); each must
rate 2.0 or better (OK or SAFE) in ``systemd-analyze security --offline=true``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
UNITS = {
    name: SYSTEMD / f"tradepipe-{name}.service" for name in ("producer", "sink", "vector", "verify")
}
VERIFY_TIMER = SYSTEMD / "tradepipe-verify.timer"
ENV_EXAMPLE = SYSTEMD / "tradepipe.env.example"
VECTOR_TOML = ROOT / "vector" / "vector.toml"

# The producer's hardening: every unit has exactly these values.
HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "ProtectHostname": "yes",
    "ProtectClock": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallErrorNumber": "EPERM",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}
SYSCALL_FILTER = ["@system-service", "~@privileged @resources"]
SIZE = re.compile(r"\d+[KMG]")


def unit_sections(unit: Path) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
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


def service(name: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The unit's [Service] keys: every value, and the last one of each (the one in force)."""
    svc = unit_sections(UNITS[name])["Service"]
    return svc, {k: v[-1] for k, v in svc.items()}


def environment(svc: dict[str, list[str]]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in svc.get("Environment", []))


def test_producer_unit_has_the_lifecycle_the_issue_asks_for() -> None:
    svc, one = service("producer")
    assert one["Type"] == "notify"
    assert one["Restart"] == "on-failure"
    assert int(one["WatchdogSec"]) >= 10  # the daemon pings every WatchdogSec/2
    assert int(one["TimeoutStopSec"]) > 20  # > the producer's own 20 s flush limit
    assert one["EnvironmentFile"].endswith("tradepipe.env")
    assert one["ExecStart"].endswith("tradepipe produce")
    # the quarantine file must be somewhere writable under ProtectSystem=strict
    assert one["StateDirectory"] == "tradepipe"
    assert environment(svc)["TRADEPIPE_FEED_QUARANTINE_PATH"].startswith("/var/lib/tradepipe/")


def test_sink_unit_lifecycle_and_writable_paths() -> None:
    svc, one = service("sink")
    assert one["Type"] == "notify" and int(one["WatchdogSec"]) >= 10
    assert int(one["TimeoutStopSec"]) > 30  # > the sink's own 30 s bound on the stop
    assert " sink " in f"{one['ExecStart']} "
    # its own state directory: the producer's belongs to the producer's dynamic user
    assert one["StateDirectory"] == "tradepipe-sink"
    env = environment(svc)
    for key in ("TRADEPIPE_SINK_QUARANTINE_PATH", "TRADEPIPE_SINK_OBJECTS_DIR"):
        assert env[key].startswith("/var/lib/tradepipe-sink/"), key
    assert one["WorkingDirectory"] == "/var/lib/tradepipe-sink"  # relative paths land there too


def test_vector_unit_writes_vectors_data_dir() -> None:
    import tomllib

    _, one = service("vector")
    text = VECTOR_TOML.read_text()
    data_dir = tomllib.loads(text.replace("${", "{"))["data_dir"]  # no interpolation needed
    assert data_dir == f"/var/lib/{one['StateDirectory']}"  # the disk buffer lives there
    assert "validate" in one["ExecStartPre"]


def test_verify_unit_is_a_repairing_oneshot_fired_by_its_timer() -> None:
    svc, one = service("verify")
    assert one["Type"] == "oneshot"
    argv = one["ExecStart"].split()
    assert argv[0].endswith("/tradepipe") and argv[1] == "verify" and "--repair" in argv
    assert argv[argv.index("--since") + 1].startswith("-")  # a window relative to now
    assert "--until" not in argv  # the default: minutes closed more than 2 minutes ago
    assert one["StateDirectory"] == "tradepipe-verify"
    # the settings, then TRADEPIPE_DB_URL from a root-only file (read by systemd, as root, before
    # the dynamic user starts; optional for a hand-made install that sets it elsewhere)
    assert svc["EnvironmentFile"] == ["/etc/tradepipe/tradepipe.env", "-/etc/tradepipe/verify.env"]
    textfile = environment(svc)["TRADEPIPE_VERIFY_TEXTFILE"]
    assert textfile.startswith("/var/lib/tradepipe-verify/") and textfile.endswith(".prom")
    # copied for node_exporter whatever the exit status, by a privileged step
    assert one["ExecStopPost"].startswith("-+") and textfile.split("/")[-1] in one["ExecStopPost"]
    timer = unit_sections(VERIFY_TIMER)["Timer"]
    assert timer["Unit"] == ["tradepipe-verify.service"]
    assert timer["OnCalendar"] == ["*:0/5"] and timer["Persistent"] == ["true"]
    assert unit_sections(VERIFY_TIMER)["Install"]["WantedBy"] == ["timers.target"]


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_has_the_producers_hardening(name: str) -> None:
    svc, one = service(name)
    assert {k: one.get(k) for k in HARDENING} == HARDENING
    assert svc["SystemCallFilter"] == SYSCALL_FILTER
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert SIZE.fullmatch(one["MemoryMax"]), one.get("MemoryMax")
    assert "User" not in one and "ReadWritePaths" not in one  # DynamicUser + StateDirectory


@pytest.mark.parametrize("name", ["producer", "sink", "verify"])
def test_every_environment_line_sets_a_setting(name: str) -> None:
    """``Environment=`` names are settings (an unknown variable would be ignored silently)."""
    from tradepipe.config import Settings

    env = environment(service(name)[0])
    assert env
    settings = Settings.load(None, env)
    for variable, value in env.items():
        section, key = variable.removeprefix("TRADEPIPE_").lower().split("_", 1)
        assert getattr(getattr(settings, section), key) == value, variable


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


def installable(name: str, tmp_path: Path) -> Path:
    """The unit with paths of this machine (verify checks that executables exist). Vector is
    not installed here: a stand-in executable takes its path (the unit is what is checked)."""
    exe = Path(sys.executable).parent / "tradepipe"
    vector = tmp_path / "vector"
    vector.write_text("#!/bin/sh\nexit 0\n")
    vector.chmod(0o755)
    text = UNITS[name].read_text().replace("/opt/tradepipe/venv/bin/tradepipe", str(exe))
    text = text.replace("/usr/bin/vector", str(vector))
    for env_file in ("tradepipe.env", "sink.env", "vector.env"):
        local = tmp_path / env_file
        local.write_text(ENV_EXAMPLE.read_text())
        text = text.replace(f"/etc/tradepipe/{env_file}", str(local))
    unit = tmp_path / UNITS[name].name
    unit.write_text(text)
    if name == "verify":  # the timer is verified beside the service it starts
        (tmp_path / VERIFY_TIMER.name).write_text(VERIFY_TIMER.read_text())
    return unit


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_passes_cleanly(name: str, tmp_path: Path) -> None:
    tool = _systemd_analyze()
    unit = installable(name, tmp_path)
    units = [str(unit)]
    if name == "verify":
        units.append(str(tmp_path / VERIFY_TIMER.name))
    res = subprocess.run([tool, "verify", *units], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    own = [line for line in res.stderr.splitlines()
           if unit.name in line or VERIFY_TIMER.name in line]  # fmt: skip
    assert not own, "\n".join(own)  # no warnings about our unit (unknown keys, bad values)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_security_rates_it_ok_or_better(name: str, tmp_path: Path) -> None:
    tool = _systemd_analyze()
    unit = installable(name, tmp_path)
    res = subprocess.run([tool, "security", "--offline=true", str(unit)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    line = next(x for x in res.stdout.splitlines() if "Overall exposure level" in x)
    score = float(line.split(":")[1].split()[0])
    rating = line.split(":")[1].split()[1]
    assert rating in ("OK", "SAFE"), line
    assert score <= 2.0, line
