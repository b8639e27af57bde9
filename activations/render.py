"""Template rendering with declared fallbacks: `{name}` placeholders, nothing executable.

A placeholder with neither a value nor a declared fallback is an error for that one message (it
ends in the ledger as skipped with the variable's name), never an empty greeting.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from activations.journeys import Template


class MissingTemplateVariable(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None
    title: str | None


def _fill(text: str, values: Mapping[str, object], fallbacks: Mapping[str, str]) -> str:
    out: list[str] = []
    for literal, name, spec, _conversion in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        value = values.get(name)
        if value is None or value == "":
            if name not in fallbacks:
                raise MissingTemplateVariable(name)
            value = fallbacks[name]
        out.append(format(value, spec or ""))
    return "".join(out)


def render(
    template: Template, values: Mapping[str, object], fallbacks: Mapping[str, str]
) -> Rendered:
    return Rendered(
        body=_fill(template.body, values, fallbacks),
        subject=_fill(template.subject, values, fallbacks) if template.subject else None,
        title=_fill(template.title, values, fallbacks) if template.title else None,
    )
