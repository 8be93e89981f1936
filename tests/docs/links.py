"""Relative links in the repository's Markdown: what they point at, and whether it exists.

Only what GitHub renders counts: fenced code blocks and inline code spans are skipped (a
``[x](y)`` in code is text), absolute URLs (``https:``, ``mailto:``) are not checked (no
network). A target is a path relative to the linking file, optionally with ``#anchor``; an
anchor must be the slug of a heading in the target file, computed as GitHub does: lower-case,
everything but letters, digits, ``_``, ``-`` and spaces dropped, spaces turned into ``-``, and
``-1``, ``-2`` ... appended to repeated slugs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
# [text](target) and ![alt](target); the text may hold one level of brackets or code
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    source: Path  # the Markdown file holding the link
    line: int
    target: str  # as written

    @property
    def path(self) -> str:
        return unquote(self.target.partition("#")[0])

    @property
    def anchor(self) -> str:
        return unquote(self.target.partition("#")[2])

    def resolved(self) -> Path:
        return (self.source.parent / self.path).resolve() if self.path else self.source.resolve()

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: ({self.target})"


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1, with code spans blanked."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            continue
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        out.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
    return out


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    fence: str | None = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            continue
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links(path: Path) -> list[Link]:
    links: list[Link] = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            target = match.group(1)
            if not SCHEME.match(target):
                links.append(Link(path, number, target))
    return links


def broken(link: Link, root: Path) -> str | None:
    """Why ``link`` does not resolve inside ``root``, or None when it does."""
    target = link.resolved()
    if not target.is_relative_to(root.resolve()):
        return "points outside the repository"
    if not target.exists():
        return "no such file"
    if link.anchor:
        if target.suffix != ".md":
            return "an anchor into a file that is not Markdown"
        if link.anchor not in anchors(target.read_text(encoding="utf-8")):
            return f"no heading with anchor #{link.anchor} in {target.name}"
    return None
