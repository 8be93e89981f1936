"""``systemd/kafka.service``, the EC2 host's broker, and the one source of its settings.

- The unit has the producer's hardening but for the three keys a JVM cannot live with (each
  named, with its reason, in the unit), passes ``systemd-analyze verify`` and rates OK or better.
- Its JVM flags are the local stack's (``scripts/stack.py``) but for the heap and the paths.
- ``stack/kafka/server.properties.in`` renders for both roles of ``stack/kafka/roles.toml``, and
  only the values the roles name differ between them; a role that misses a placeholder fails.
- The producer, the sink and Vector order themselves after it and pull it in.
- The unit's own commands (format twice, then the broker) start a real broker on the ``host``
  role's settings: on this machine's Java, with the jars the local stack resolved, the paths and
  ports swapped for a temporary directory and free ports; SIGTERM stops it with the status the
  unit counts as success.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from scripts.kafka_config import KafkaConfigError, render, roles
from tests.conftest import unavailable
from tests.systemd.test_units import (
    ENV_EXAMPLE,
    HARDENING,
    ROOT,
    SIZE,
    SYSTEMD,
    _systemd_analyze,
    unit_sections,
)

UNIT = SYSTEMD / "kafka.service"
# What a JVM needs that the producer's hardening forbids (the unit says why for each).
JVM_EXCEPTIONS = {"MemoryDenyWriteExecute", "ProcSubset"}
STACK_DIR = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))


def kafka_service() -> dict[str, list[str]]:
    return unit_sections(UNIT)["Service"]


def last(svc: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in svc.items()}


def test_kafka_unit_has_the_producers_hardening_but_what_a_jvm_needs() -> None:
    svc = kafka_service()
    one = last(svc)
    kept = {k: v for k, v in HARDENING.items() if k not in JVM_EXCEPTIONS}
    assert {k: one.get(k) for k in kept} == kept
    assert not JVM_EXCEPTIONS & set(one)  # absent, not weakened to some other value
    assert svc["SystemCallFilter"] == ["@system-service", "~@privileged"]
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert SIZE.fullmatch(one["MemoryMax"])
    assert one["StateDirectory"] == "kafka" and "ReadWritePaths" not in one
    assert one["SuccessExitStatus"] == "143"  # the JVM's exit status on SIGTERM
    text = UNIT.read_text()
    for key in JVM_EXCEPTIONS | {"~@resources"}:
        assert f"# - no {key}" in text, f"the unit must say why it lacks {key}"


def test_kafka_unit_writes_only_its_state_directory() -> None:
    props = dict(
        line.split("=", 1) for line in render("host").splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    assert props["log.dirs"].startswith(f"/var/lib/{last(kafka_service())['StateDirectory']}/")
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"


def jvm_flags(command: list[str]) -> list[str]:
    """The flags before the main class, without the heap and the path-valued ones."""
    java_end = next(i for i, a in enumerate(command) if a.startswith("kafka."))
    out, skip = [], False
    for arg in command[1:java_end]:
        if skip:
            skip = False
        elif arg == "-cp":
            skip = True
        elif not re.match(r"-Xm[sx]|-Dlog4j2\.configurationFile=|-Dtradepipe\.stack=", arg):
            out.append(arg)
    return out


def test_kafka_unit_runs_the_local_stacks_jvm_flags() -> None:
    stack_py = (ROOT / "scripts" / "stack.py").read_text()
    body = stack_py.split("def _kafka_jvm()", 1)[1].split("\n\n", 1)[0]
    stack_flags = re.findall(r'"(-[^"]*)"', body) + re.findall(r'f"(-[^"{]*)', body)
    stack = [f for f in stack_flags if not re.match(r"-Xm[sx]|-Dlog4j2|-Dtradepipe|-cp", f)]
    unit = jvm_flags(shlex.split(last(kafka_service())["ExecStart"]))
    assert sorted(unit) == sorted(stack)
    assert "-Xmx256m" in last(kafka_service())["ExecStart"]  # sized for a 1 GiB host


def test_both_roles_render_one_template_and_differ_only_in_their_values() -> None:
    table = roles()
    assert set(table) == {"test", "host"}
    test = render("test", {"PORT": 1, "CONTROLLER_PORT": 2, "LOG_DIR": "/x"})
    host = render("host")
    assert "@" not in test + host
    differing = [
        (a, b) for a, b in zip(test.splitlines(), host.splitlines(), strict=True) if a != b
    ]
    keys = {a.split("=", 1)[0] for a, _ in differing}
    # the ports (bootstrap, listeners, advertised), the log directory and the four timings
    assert keys == {
        "controller.quorum.bootstrap.servers", "listeners", "advertised.listeners", "log.dirs",
        "log.retention.check.interval.ms", "log.segment.delete.delay.ms",
        "broker.session.timeout.ms", "broker.heartbeat.interval.ms",
    }  # fmt: skip
    assert "group.initial.rebalance.delay.ms" not in keys  # shared, not per role


def test_a_role_that_misses_or_adds_a_value_is_refused() -> None:
    with pytest.raises(KafkaConfigError, match="without a value"):
        render("test")  # the stack's ports and log dir are the caller's
    with pytest.raises(KafkaConfigError, match=r"without a placeholder \['NOT_A_SETTING'\]"):
        render("host", {"NOT_A_SETTING": 1})
    with pytest.raises(KafkaConfigError, match="no role"):
        render("prod")


@pytest.mark.parametrize("name", ["producer", "sink", "vector"])
def test_pipeline_units_start_after_kafka(name: str) -> None:
    unit = unit_sections(SYSTEMD / f"tradepipe-{name}.service")["Unit"]
    assert "kafka.service" in unit["Wants"] and "kafka.service" in unit["After"]
    assert "network-online.target" in unit["After"]  # kept


def installable(tmp_path: Path) -> Path:
    env = tmp_path / "cluster.env"
    env.write_text("KAFKA_CLUSTER_ID=MkU3OEVBNTcwNTJENDM2Qg\n")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/etc/kafka/cluster.env", str(env)))
    return unit


def test_kafka_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    unit = installable(tmp_path)
    res = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    own = [line for line in res.stderr.splitlines() if unit.name in line]
    assert not own, "\n".join(own)


def test_kafka_unit_rates_ok_or_better(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    res = subprocess.run([tool, "security", "--offline=true", str(installable(tmp_path))],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    line = next(x for x in res.stdout.splitlines() if "Overall exposure level" in x)
    score, rating = line.split(":")[1].split()[:2]
    assert rating in ("OK", "SAFE") and float(score) <= 2.0, line


# ------------------------------------------------------------------ the unit's commands, run


def stack_classpath() -> str:
    """The jars the local stack runs (scripts/stack caches Maven's classpath)."""
    for cache in sorted(glob.glob(str(STACK_DIR / "cache" / "kafka-classpath-*.txt"))):
        cp = Path(cache).read_text().strip()
        if cp and all(Path(jar).exists() for jar in cp.split(":")):
            return cp
    unavailable("Kafka's jars: run `scripts/stack up` once (it resolves them with Maven)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def swapped(line: str, paths: dict[str, str]) -> list[str]:
    for old, new in paths.items():
        line = line.replace(old, new)
    return shlex.split(line)


async def broker_answers(bootstrap: str, proc: subprocess.Popen[bytes]) -> None:
    while proc.poll() is None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except Exception:  # starting: not answering yet
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise AssertionError(f"the broker exited with {proc.returncode}")


def test_the_units_commands_start_a_broker_on_the_host_settings(tmp_path: Path) -> None:
    java = shutil.which("java") or unavailable("java 17+ (apt-get install openjdk-17-jre-headless)")
    port, controller = free_port(), free_port()
    props = tmp_path / "server.properties"
    props.write_text(render("host", {"PORT": port, "CONTROLLER_PORT": controller,
                                     "LOG_DIR": tmp_path / "data"}))  # fmt: skip
    classpath = stack_classpath()
    cluster_id = subprocess.run(
        [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    paths = {
        "/usr/bin/java": java,
        "/opt/kafka/libs/*": classpath,
        "/etc/kafka/server.properties": str(props),
        "/etc/kafka/log4j2.xml": str(ROOT / "stack" / "kafka" / "log4j2.xml"),
        "${KAFKA_CLUSTER_ID}": cluster_id,
    }
    one = last(kafka_service())
    for _ in range(2):  # the second start finds the log formatted: a no-op, not an error
        fmt = subprocess.run(swapped(one["ExecStartPre"], paths), capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)  # fmt: skip
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    assert (tmp_path / "data" / "meta.properties").exists()
    log = (tmp_path / "kafka.log").open("wb")
    proc = subprocess.Popen(swapped(one["ExecStart"], paths), stdout=log, stderr=log,
                            cwd=tmp_path)  # fmt: skip
    try:
        asyncio.run(asyncio.wait_for(broker_answers(f"127.0.0.1:{port}", proc), 120))
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=int(one["TimeoutStopSec"]))
        log.close()
    output = (tmp_path / "kafka.log").read_text()
    assert status in (0, -signal.SIGTERM, int(one["SuccessExitStatus"])), output[-3000:]
    assert "Kafka Server started" in output


def test_env_example_is_the_hosts_broker() -> None:
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    assert values["TRADEPIPE_KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{roles()['host']['PORT']}"
