"""Build the EC2 host's bundle: ``python deploy/bundle.py [OUT]`` (``make host-bundle``; default
``dist/host-bundle.tar.gz``), which ``make deploy`` uploads to the artifacts bucket and the host's
user data unpacks and hands to ``deploy/host-setup.sh``.

It holds, under the repository's own paths, the files the host installs and nothing else:

- ``deploy/host-setup.sh``, the installer;
- ``dist/tradepipe-<version>-py3-none-any.whl`` (``pip wheel --no-deps .``) and
  ``requirements/local.txt``, the lock of every runtime command (produce, sink, migrate), so the
  host installs pinned, hashed distributions only;
- ``systemd/``: the units and ``tradepipe.env.example``, as they are in the repository;
- ``vector/vector.toml``;
- ``kafka/server.properties`` (``stack/kafka/server.properties.in`` rendered for role ``host``:
  ``scripts/kafka_config.py``), ``stack/kafka/log4j2.xml`` and ``kafka/libs/``: the jars
  ``stack/kafka/pom.xml`` resolves for the local stack (Maven checks their checksums), so the
  host runs the broker the tests run.

The archive is reproducible for the same inputs: sorted members, fixed times and owners.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from scripts.kafka_config import render  # noqa: E402 (needs the root on the path)

# repository files shipped as they are (relative paths kept)
FILES = (
    "deploy/host-setup.sh",
    "requirements/local.txt",
    "systemd/kafka.service",
    "systemd/tradepipe-producer.service",
    "systemd/tradepipe-sink.service",
    "systemd/tradepipe-vector.service",
    "systemd/tradepipe-verify.service",
    "systemd/tradepipe-verify.timer",
    "systemd/tradepipe.env.example",
    "vector/vector.toml",
    "stack/kafka/log4j2.xml",
)
EXECUTABLE = {"deploy/host-setup.sh"}


def kafka_jars() -> list[Path]:
    """The local stack's broker classpath (resolved by Maven, cached by scripts/stack)."""
    from scripts.stack import kafka_classpath  # Maven, only when a bundle is really built

    return [Path(jar) for jar in kafka_classpath().split(":")]


def build_wheel(into: Path) -> Path:
    subprocess.run(  # noqa: S603 (a fixed command: this interpreter's pip on this repository)
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--wheel-dir", str(into), str(ROOT)],
        check=True, env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},  # fixed zip times
    )  # fmt: skip
    [wheel] = into.glob("tradepipe-*.whl")
    return wheel


def members(wheel: Path, jars: list[Path]) -> dict[str, bytes | Path]:
    out: dict[str, bytes | Path] = {name: ROOT / name for name in FILES}
    out[f"dist/{wheel.name}"] = wheel
    out["kafka/server.properties"] = render("host").encode()
    for jar in jars:
        out[f"kafka/libs/{jar.name}"] = jar
    return out


def write(out: Path, files: dict[str, bytes | Path]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with (
        tmp.open("wb") as raw,
        gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz,  # no name, no time in the header
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in sorted(files):
            source = files[name]
            data = source if isinstance(source, bytes) else source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid, info.gid = len(data), 0, 0, 0
            info.uname = info.gname = ""
            info.mode = 0o755 if name in EXECUTABLE else 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "dist" / "host-bundle.tar.gz"
    with tempfile.TemporaryDirectory(prefix="host-bundle-") as tmp:
        files = members(build_wheel(Path(tmp)), kafka_jars())
        write(out, files)
    print(f"{out}: {out.stat().st_size:,} bytes, {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
