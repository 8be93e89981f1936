"""deploy/tradepipe.yaml read as CloudFormation reads it, for the tests: the short tags
(``!Ref``, ``!Sub``, ``!GetAtt`` ...) as their long forms, conditions evaluated, and a resolver
for the intrinsic functions the template uses once the stack's physical ids are known. The
tests compare what the local AWS holds with the template's own values through this, never with
a second copy of them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "tradepipe.yaml"
TAGS = ("Ref", "Sub", "GetAtt", "If", "Equals", "Not", "Select", "GetAZs", "Base64", "Join")


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags."""


def _tag(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if name == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {"Ref" if name == "Ref" else f"Fn::{name}": value}

    return construct


for _name in TAGS:
    CfnLoader.add_constructor(f"!{_name}", _tag(_name))


def load() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # noqa: S506 (SafeLoader + tags)
    return doc


class Resolver:
    """The template's values for one stack: parameters (with defaults), pseudo parameters,
    conditions, and ``physical``/``attribute`` for the stack's resources."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        physical: Mapping[str, str] | None = None,
        attribute: Callable[[str, str], str] | None = None,
    ) -> None:
        self.doc = doc
        defaults = {k: str(v.get("Default", "")) for k, v in doc["Parameters"].items()}
        self.params = {**defaults, **parameters}
        self.pseudo = dict(pseudo)
        self.physical = dict(physical or {})
        self.attribute = attribute

    def condition(self, name: str) -> bool:
        return bool(self.value(self.doc["Conditions"][name]))

    def present(self, logical: str) -> bool:
        cond = self.doc["Resources"][logical].get("Condition")
        return cond is None or self.condition(cond)

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources this stack has (conditions applied)."""
        return {k: v for k, v in self.doc["Resources"].items() if self.present(k)}

    def ref(self, name: str) -> str:
        if name in self.params:
            return self.params[name]
        if name.startswith("AWS::"):
            return self.pseudo[name]
        return self.physical[name]

    def getatt(self, logical: str, attr: str) -> str:
        assert self.attribute is not None, f"no attribute resolver for {logical}.{attr}"
        return self.attribute(logical, attr)

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in variables:
                return str(self.value(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self.getatt(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic function resolved (AWS::NoValue drops the key)."""
        if isinstance(node, list):
            return [self.value(x) for x in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            if key == "Fn::GetAtt":
                return self.getatt(*arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::Base64":
                return self.value(arg)
        return {k: self.value(v) for k, v in node.items()}

    def properties(self, logical: str) -> dict[str, Any]:
        props: dict[str, Any] = self.value(self.doc["Resources"][logical].get("Properties", {}))
        return props
