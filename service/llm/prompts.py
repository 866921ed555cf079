"""Prompt files: YAML under prompts/, each with a name, version, variables and schema.

Templates use `$name` placeholders (string.Template), so JSON braces in a prompt need
no escaping and a missing variable is an error, never a silent blank.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptFile:
    name: str
    version: str
    description: str
    variables: tuple[str, ...]
    output_schema: str | None
    system: str
    user: str

    def render(self, **values: str) -> list[tuple[str, str]]:
        """Chat messages as (role, content) pairs, every declared variable filled."""
        given, declared = set(values), set(self.variables)
        if given != declared:
            raise PromptError(f"prompt {self.name}: missing {sorted(declared - given)}, "
                              f"unknown {sorted(given - declared)}")
        messages = [("human", string.Template(self.user).substitute(values))]
        if self.system.strip():
            messages.insert(0, ("system", string.Template(self.system).substitute(values)))
        return messages


@cache
def load_prompt(prompts_dir: Path, name: str) -> PromptFile:
    path = prompts_dir / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptError(f"cannot read prompt {path}: {exc}") from None
    try:
        prompt = PromptFile(
            name=str(raw["name"]),
            version=str(raw["version"]),
            description=str(raw.get("description", "")),
            variables=tuple(raw.get("variables", [])),
            output_schema=raw.get("output_schema"),
            system=str(raw.get("system", "")),
            user=str(raw["user"]),
        )
    except (KeyError, TypeError) as exc:
        raise PromptError(f"prompt {path} lacks {exc}") from None
    if prompt.name != name:
        raise PromptError(f"prompt {path} says its name is {prompt.name!r}")
    used = {
        m.group("named") or m.group("braced")
        for text in (prompt.system, prompt.user)
        for m in string.Template.pattern.finditer(text)
        if m.group("named") or m.group("braced")
    }
    if used != set(prompt.variables):
        raise PromptError(f"prompt {name}: template uses {sorted(used)}, declares "
                          f"{sorted(prompt.variables)}")
    return prompt
