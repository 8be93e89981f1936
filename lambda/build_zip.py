"""Build ``dist/lambda.zip``: ``python lambda/build_zip.py [OUT]`` (``make lambda-zip``).

The zip holds, at its root, ``handler.py``, ``tradepipe/__init__.py``, ``tradepipe/core``,
``tradepipe/store`` and the MySQL migrations (whose versions the handler checks), plus the
installed files of the few distributions they import: pymysql, msgspec (the core's JSON
decoder), stamina and tenacity (bounded retries). boto3 is not shipped: the Lambda Python
runtime provides it. Files come from the running interpreter's environment (no network), so
build with the project's Python 3.11 venv on x86_64 Linux: msgspec is compiled, and its wheel
must match the function's runtime (``python3.11``, ``x86_64``).

The archive is reproducible: sorted entries, fixed timestamps, no ``__pycache__``.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "daemon" / "tradepipe"
DISTRIBUTIONS = ("PyMySQL", "msgspec", "stamina", "tenacity")
RUNTIME_TAG = ("cp311", "x86_64")
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


def distribution_files(name: str) -> dict[str, Path]:
    dist = md.distribution(name)
    wheel = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: false" in wheel and not all(tag in wheel for tag in RUNTIME_TAG):
        raise SystemExit(
            f"build_zip: the installed {name} is not a {'/'.join(RUNTIME_TAG)} build; build "
            "with a Python 3.11 venv on x86_64 Linux (the Lambda runtime's)"
        )
    out: dict[str, Path] = {}
    for f in dist.files or ():
        parts = f.parts
        if "__pycache__" in parts or f.suffix == ".pyc" or parts[0].startswith(".."):
            continue
        if parts[0].endswith(".dist-info") and f.name not in ("METADATA", "LICENSE", "WHEEL"):
            continue  # keep the metadata and licence, not RECORD/INSTALLER
        out[f.as_posix()] = Path(str(f.locate()))
    return out


def build(out: Path) -> int:
    files = project_files()
    for name in DISTRIBUTIONS:
        files.update(distribution_files(name))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
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
