"""Render the broker's settings for a role: ``stack/kafka/server.properties.in`` with the
values of ``stack/kafka/roles.toml`` (``test``: the local stack; ``host``: the EC2 host).

One template, values per role: every placeholder (a name between at signs) of the template must
get a value (from the role, or from ``overrides`` for what only the caller knows, like the
stack's ports) and every value must have its placeholder, so a setting cannot be added to one
broker and forgotten in the other. ``python -m scripts.kafka_config host`` prints the host's file.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

KAFKA = Path(__file__).resolve().parent.parent / "stack" / "kafka"
TEMPLATE = KAFKA / "server.properties.in"
ROLES = KAFKA / "roles.toml"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


class KafkaConfigError(ValueError):
    """A role that does not fill the template exactly."""


def roles() -> dict[str, dict[str, object]]:
    with ROLES.open("rb") as f:
        return tomllib.load(f)


def render(role: str, overrides: Mapping[str, object] | None = None) -> str:
    """The template with ``role``'s values and ``overrides`` (which win) filled in."""
    known = roles()
    if role not in known:
        raise KafkaConfigError(f"no role {role!r} in {ROLES.name} (roles: {sorted(known)})")
    values = {**known[role], **(overrides or {})}
    template = TEMPLATE.read_text()
    wanted = set(PLACEHOLDER.findall(template))
    missing, unused = sorted(wanted - set(values)), sorted(set(values) - wanted)
    if missing or unused:
        raise KafkaConfigError(
            f"role {role!r}: placeholders without a value {missing}, values without a "
            f"placeholder {unused}"
        )
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m scripts.kafka_config ROLE", file=sys.stderr)
        return 2
    sys.stdout.write(render(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
