"""Prompt files and offline token counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from service.core.config import Settings
from service.llm.fake import ScriptedChatModel, prompt_name
from service.llm.prompts import PromptError, load_prompt
from service.llm.tokens import count_tokens

PROMPTS = Settings().prompts_dir


def test_shipped_prompts_load_with_name_version_and_variables() -> None:
    name = load_prompt(PROMPTS, "name_interest_group")
    assert name.version and name.output_schema == "service.summaries.schemas.GroupName"
    assert set(name.variables) == {"polarity", "count", "event_types", "mean_rating", "tags"}
    messages = list(name.render(polarity="like", count="3", event_types="view",
                                mean_rating="", tags="hiking, trails"))
    assert [role for role, _ in messages] == ["system", "human"]
    assert "hiking, trails" in messages[1][1] and "$tags" not in messages[1][1]
    repair = load_prompt(PROMPTS, "repair_json")
    assert [role for role, _ in repair.render(problem="bad")] == ["human"]


class NameTaker(ScriptedChatModel):
    names: list[str | None] = []

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        self.names.append(prompt_name(run_manager))
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_a_call_carries_its_prompts_name_where_fakes_read_it_and_models_do_not() -> None:
    repair = load_prompt(PROMPTS, "repair_json")
    rendered = repair.render(problem="bad")
    assert (rendered.name, rendered.version) == ("repair_json", repair.version)
    assert not any("repair_json" in text for _, text in rendered)
    model = NameTaker(replies=["{}"], calls=[], names=[])
    model.invoke(list(rendered), config=rendered.run_config())
    model.with_structured_output({}, include_raw=True).invoke(
        list(rendered.with_messages([*rendered, ("ai", "{"), *rendered])),
        config=rendered.with_messages([]).run_config())
    assert model.names == ["repair_json", "repair_json"]
    model.invoke(list(rendered))
    assert model.names[-1] is None


def test_render_refuses_missing_or_unknown_variables() -> None:
    narrate = load_prompt(PROMPTS, "narrate_profile")
    given = dict.fromkeys(narrate.variables, "x")
    missing = dict(list(given.items())[1:])
    with pytest.raises(PromptError, match="missing"):
        narrate.render(**missing)
    with pytest.raises(PromptError, match="unknown"):
        narrate.render(**given, extra="x")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name: p\nversion: '1'\nvariables: [a]\nuser: 'uses $b'\n", "template uses"),
        ("name: other\nversion: '1'\nvariables: []\nuser: 'hi'\n", "says its name"),
        ("name: p\nvariables: []\nuser: 'hi'\n", "lacks"),
    ],
)
def test_bad_prompt_files_are_refused(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PromptError, match=error):
        load_prompt(tmp_path, "p")


def test_token_counts_work_offline() -> None:
    assert count_tokens("Marie Curie was a physicist and chemist.") == 11
    assert count_tokens("") == 0
