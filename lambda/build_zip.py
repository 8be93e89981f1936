"""Build ``dist/lambda.zip``: ``python lambda/build_zip.py [OUT]`` (``make lambda-zip``).

The zip holds, at its root, ``handler.py``, ``tradepipe/__init__.py``, ``tradepipe/core``,
``tradepipe/store`` and the MySQL migrations (whose versions the handler checks), plus the
distributions they import, installed from the Lambda's lock ``requirements/lambda.txt``
(pinned, with hashes: ``pip install --require-hashes``): pymysql, msgspec (the core's JSON
decoder), stamina and tenacity (bounded retries). boto3 is not shipped: the Lambda Python
runtime provides it. pip picks the wheels for the function's runtime (CPython 3.11, x86_64
manylinux) whatever machine builds the zip; it needs PyPI (or pip's cache of those wheels).

The archive is reproducible: sorted entries, fixed timestamps, no ``__pycache__``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "daemon" / "tradepipe"
LOCK = ROOT / "requirements" / "lambda.txt"
# the function's runtime (python3.11, x86_64); manylinux2014 = glibc 2.17, older than its own
RUNTIME = ("--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
           "--platform", "manylinux2014_x86_64")  # fmt: skip
KEPT_METADATA = ("METADATA", "LICENSE", "WHEEL")  # of each .dist-info: not RECORD/INSTALLER
TARGET_BYTES = 1_000_000
EPOCH = (1980, 1, 1, 0, 0, 0)


def project_files() -> dict[str, Path]:
    files = {"handler.py": ROOT / "lambda" / "handler.py"}
    files["tradepipe/__init__.py"] = PACKAGE / "__init__.py"
    for sub in ("core", "store"):
        for path in sorted((PACKAGE / sub).glob("*.py")):
            files[f"tradepipe/{sub}/{path.name}"] = path
    for path in sorted((PACKAGE / "migrations").glob("*.mysql.sql")):
        files[f"tradepipe/migrations/{path.name}"] = path  # the handler checks the schema version
    return files


def install_locked(target: Path) -> None:
    """The lock's distributions, for the Lambda's runtime, into ``target`` (no dependencies
    beyond the lock's, no bytecode: the zip ships sources)."""
    subprocess.run(  # noqa: S603 (a fixed command: this interpreter's pip, the repository's lock)
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "--only-binary=:all:", "--no-compile", *RUNTIME,
         "--target", str(target), "-r", str(LOCK)],
        check=True,
    )  # fmt: skip


def distribution_files(site: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        rel = path.relative_to(site)
        parts = rel.parts
        if "__pycache__" in parts or rel.suffix == ".pyc" or parts[0] == "bin":
            continue
        if parts[0].endswith(".dist-info") and rel.name not in KEPT_METADATA:
            continue
        out[rel.as_posix()] = path
    return out


def build(out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tempfile.TemporaryDirectory(prefix="lambda-site-") as site:
        install_locked(Path(site))
        files = project_files() | distribution_files(Path(site))
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for arcname in sorted(files):
                info = zipfile.ZipInfo(arcname, date_time=EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, files[arcname].read_bytes())
    tmp.replace(out)
    return out.stat().st_size


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "dist" / "lambda.zip"
    size = build(out)
    verdict = "within" if size < TARGET_BYTES else "OVER"
    print(f"{out}: {size:,} bytes ({verdict} the {TARGET_BYTES:,}-byte target)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
