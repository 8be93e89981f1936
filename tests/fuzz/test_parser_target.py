"""The atheris target runs inside ``make test`` for a bounded time (``make fuzz`` runs it longer).

Seeded with valid events and the catalogue of bad lines, libFuzzer mutates from there guided by
coverage of ``tradepipe``; a property violation or any exception other than ``ParseError`` makes
it save the input and exit non-zero, which fails this test with the input's path and the trace.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.core.fuzzing import bad_lines, encode, valid_event

TARGET = Path(__file__).with_name("parser_target.py")
SECONDS = 20


def _corpus(folder: Path) -> None:
    folder.mkdir()
    seeds = [encode(valid_event(a=a, m=a % 2 == 0)) for a in (1, 2, 3)]
    seeds.append(b'{"stream":"btcusdt@aggTrade","data":' + seeds[0] + b"}")
    seeds += bad_lines(seed=11, count=60)
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:03d}").write_bytes(seed)


def run_target(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TARGET), *args],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
        cwd=tmp_path,
        check=False,
    )


def test_the_parser_survives_bounded_coverage_guided_fuzzing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _corpus(corpus)
    done = run_target(
        tmp_path, f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
        "-max_len=4096", f"-artifact_prefix={tmp_path}/", str(corpus),
    )  # fmt: skip
    found = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0, f"finding {found}:\n{done.stderr[-4000:]}"
    runs = re.search(r"Done (\d+) runs", done.stderr)
    assert runs is not None, done.stderr[-2000:]
    assert int(runs.group(1)) > 1000, f"only {runs.group(1)} inputs in {SECONDS} s"


def test_the_target_reports_a_finding(tmp_path: Path) -> None:
    """Not vacuous: a valid event passes the target, and the same event fails its check once
    the parser is replaced by one that refuses everything (the oracle disagrees)."""
    good = tmp_path / "good"
    good.write_bytes(encode(valid_event(a=5)))
    assert run_target(tmp_path, str(good)).returncode == 0
    root = str(Path(__file__).resolve().parents[2])
    script = (
        f"import sys; sys.argv = ['t']; sys.path.insert(0, {root!r}); "
        "import tests.fuzz.parser_target as t; t.parse_event = lambda data: None; "
        f"t.check({encode(valid_event(a=5))!r})"
    )
    broken = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert broken.returncode != 0 and "AssertionError" in broken.stderr, broken.stderr[-2000:]
