"""Prompt files and offline token counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.config import Settings
from service.llm.prompts import PromptError, load_prompt
from service.llm.tokens import count_tokens

PROMPTS = Settings().prompts_dir


def test_shipped_prompts_load_with_name_version_and_variables() -> None:
    summarize = load_prompt(PROMPTS, "summarize_interests")
    assert summarize.version and summarize.output_schema
    assert set(summarize.variables) == {"activity", "now", "event_count"}
    messages = summarize.render(activity="E1 | x", now="today", event_count="1")
    assert [role for role, _ in messages] == ["system", "human"]
    assert "E1 | x" in messages[1][1] and "$activity" not in messages[1][1]
    repair = load_prompt(PROMPTS, "repair_json")
    assert [role for role, _ in repair.render(problem="bad")] == ["human"]


def test_render_refuses_missing_or_unknown_variables() -> None:
    summarize = load_prompt(PROMPTS, "summarize_interests")
    with pytest.raises(PromptError, match="missing"):
        summarize.render(activity="a", now="n")
    with pytest.raises(PromptError, match="unknown"):
        summarize.render(activity="a", now="n", event_count="1", extra="x")


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
