"""The configuration table of ``docs/configuration.md``, generated from :mod:`tradepipe.config`.

``python -m tradepipe.config_table`` prints it; ``--write docs/configuration.md`` replaces the
part of the file between the two markers; ``--check docs/configuration.md`` exits 1 when the file
differs from what ``config.py`` says (``tests/config/test_table.py`` runs the same check).

One row per key: ``section.key``, its environment variable, what it accepts (type, bounds,
choices), its default, the ``tradepipe run`` default where :data:`~tradepipe.config.RUN_DEFAULTS`
changes it, and the description written beside the key in ``config.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from tradepipe.config import RUN_DEFAULTS, SECTIONS, Settings, describe, env_name

BEGIN = "<!-- BEGIN generated: config table -->"
END = "<!-- END generated: config table -->"
DOC = "docs/configuration.md"
COMMAND = f"python -m tradepipe.config_table --write {DOC}"
HEADER = (
    "| key | environment variable | accepts | default | `tradepipe run` | meaning |",
    "|---|---|---|---|---|---|",
)


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    env: str
    accepts: str
    default: str
    run_default: str
    description: str


def rows() -> Iterator[Row]:
    defaults = Settings()
    for section, keys in SECTIONS.items():
        for key, hint in keys.items():
            default = getattr(getattr(defaults, section), key)
            run = RUN_DEFAULTS.get(section, {}).get(key, default)
            yield Row(
                key=f"{section}.{key}",
                env=env_name(section, key),
                accepts=describe(hint),
                default=_value(default),
                run_default=_value(run) if run != default else "",
                description=description(hint),
            )


def description(hint: Any) -> str:
    info = mi.type_info(hint)
    if isinstance(info, mi.Metadata):
        return str((info.extra_json_schema or {}).get("description", ""))
    return ""


def table() -> str:
    lines = list(HEADER)
    for r in rows():
        cells = (
            f"`{r.key}`",
            f"`{r.env}`",
            _cell(r.accepts),
            f"`{_cell(r.default)}`",
            f"`{_cell(r.run_default)}`" if r.run_default else "",
            _cell(r.description),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(document: str) -> str:
    """``document`` with the table between the markers replaced by the current one."""
    head, begin, rest = document.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if value == "":
        return '""'
    return str(msgspec.to_builtins(value))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradepipe.config_table", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="FILE", help="replace the table between the markers")
    mode.add_argument("--check", metavar="FILE", help="exit 1 when FILE's table is out of date")
    args = parser.parse_args(argv)
    if args.write is None and args.check is None:
        sys.stdout.write(table())
        return 0
    path = Path(args.write or args.check)
    current = path.read_text(encoding="utf-8")
    try:
        wanted = render(current)
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if args.write is not None:
        if wanted != current:
            path.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != current:
        print(f"{path}: the configuration table is out of date; run: {COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
