"""Prompt files: YAML under prompts/, each with a name, version, variables and schema.

Templates use `$name` placeholders (string.Template), so JSON braces in a prompt need
no escaping and a missing variable is an error, never a silent blank.

A rendered prompt remembers which file it came from. The name and version travel with
the model call as LangChain run metadata (`RenderedPrompt.run_config()`): tracing and
the test fakes read it, no server receives it, and the text the model reads is the
template's alone.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import yaml
from langchain_core.runnables import RunnableConfig

Message = tuple[str, str]  # (role, content): "system", "human" or "ai"


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class RenderedPrompt:
    """Chat messages rendered from one prompt file, and which file (and version) that was."""

    name: str
    version: str
    messages: tuple[Message, ...]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def with_messages(self, messages: Iterable[Message]) -> RenderedPrompt:
        """Other messages (history added, a repair turn) asked on behalf of the same prompt."""
        return replace(self, messages=tuple(messages))

    def run_config(self) -> RunnableConfig:
        """LangChain's per-call config naming the prompt; it changes no request body."""
        return {"run_name": self.name, "metadata": {
            "prompt_name": self.name, "prompt_version": self.version}}


@dataclass(frozen=True)
class PromptFile:
    name: str
    version: str
    description: str
    variables: tuple[str, ...]
    output_schema: str | None
    system: str
    user: str

    def render(self, **values: str) -> RenderedPrompt:
        """Chat messages as (role, content) pairs, every declared variable filled."""
        given, declared = set(values), set(self.variables)
        if given != declared:
            raise PromptError(f"prompt {self.name}: missing {sorted(declared - given)}, "
                              f"unknown {sorted(given - declared)}")
        messages = [("human", string.Template(self.user).substitute(values))]
        if self.system.strip():
            messages.insert(0, ("system", string.Template(self.system).substitute(values)))
        return RenderedPrompt(self.name, self.version, tuple(messages))


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
