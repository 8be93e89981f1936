"""The documentation against the tree: every relative link in README.md and docs/ resolves (file
and heading anchor), and the README's folder map and command list match ``ls`` and the CLI.

No network and no stack: files and ``git ls-files`` only.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from tests.docs.links import Link, anchors, broken, relative_links, slug

from tradepipe.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKDOWN = sorted([README, *(ROOT / "docs").glob("*.md"), ROOT / "vector" / "README.md"])


def all_links() -> dict[Path, list[Link]]:
    by_target: dict[Path, list[Link]] = defaultdict(list)
    for path in MARKDOWN:
        for link in relative_links(path):
            by_target[link.resolved()].append(link)
    return dict(by_target)


LINKS = all_links()


def target_params() -> list[object]:
    params: list[object] = []
    for target in sorted(LINKS):
        params.append(pytest.param(target, id=str(target.relative_to(ROOT))))
    return params


def test_the_documents_link_to_each_other() -> None:
    # the check below is not vacuous: the README links into every file of docs/
    linked = {link.resolved() for link in relative_links(README)}
    for doc in (ROOT / "docs").glob("*.md"):
        assert doc.resolve() in linked, f"README.md does not link to {doc.name}"
    assert sum(len(links) for links in LINKS.values()) > 50


@pytest.mark.parametrize("target", target_params())
def test_every_relative_link_resolves(target: Path) -> None:
    problems = [f"{link}: {why}" for link in LINKS[target] if (why := broken(link, ROOT))]
    assert not problems, "\n".join(problems)


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Kafka → S3: `a` b\n\n## Kafka → S3: `a` b\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n"
        "[ok](other.md) [ok](other.md#kafka--s3-a-b) [ok](other.md#kafka--s3-a-b-1) [ok](#doc)\n"
        "[missing](nope.md) [bad anchor](other.md#nope) [self](#nope)\n"
        "`[in code](nope.md)` [web](https://example.com/nope)\n"
        "```\n[in a fence](nope.md)\n# not a heading\n```\n"
    )
    results = {link.target: broken(link, tmp_path) for link in relative_links(doc)}
    assert results == {
        "other.md": None,
        "other.md#kafka--s3-a-b": None,
        "other.md#kafka--s3-a-b-1": None,
        "#doc": None,
        "nope.md": "no such file",
        "other.md#nope": "no heading with anchor #nope in other.md",
        "#nope": "no heading with anchor #nope in doc.md",
    }
    assert "not-a-heading" not in anchors(doc.read_text())
    assert slug("Topic: why `segment.ms=60000`") == "topic-why-segmentms60000"


def tracked_dirs() -> set[str]:
    """Top-level folders and the folders of daemon/tradepipe/, as git (and so `ls`) has them."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    dirs = {f.split("/")[0] + "/" for f in files if "/" in f}
    dirs |= {f"{f}/" for f in files if (ROOT / f).is_symlink() and (ROOT / f).is_dir()}
    package = "daemon/tradepipe/"
    dirs |= {
        package + f[len(package) :].split("/")[0] + "/"
        for f in files
        if f.startswith(package) and f.count("/") > 2
    }
    return dirs | {package}


def folder_map() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Folders\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+/)` \|", section, flags=re.MULTILINE))


def test_the_folder_map_matches_the_tree() -> None:
    shown, present = folder_map(), tracked_dirs()
    assert present - shown == set(), "folders missing from the README's folder map"
    assert shown - present == set(), "the README's folder map names folders that do not exist"


def test_every_command_is_in_the_readme() -> None:
    commands = README.read_text(encoding="utf-8").split("\n## Commands\n", 1)[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `tradepipe (\w+)", commands, flags=re.MULTILINE))
    assert listed == set(COMMANDS)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"`make ([\w-]+)", commands))
    assert named and named <= targets, f"make targets the Makefile lacks: {named - targets}"
