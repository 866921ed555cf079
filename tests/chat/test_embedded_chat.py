"""The chat end to end with the real embedded model (llama.cpp + SmolLM2-135M), real
MiniLM embeddings and a real Chroma folder. The profile is written by the merge path
directly: this test is about grounding the chat, not about summarizing. A 135M model
words things loosely; the contract checked is that whatever it says cites only trace
evidence, or is replaced by the decline phrase and the trace's own reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.chat.schemas import DECLINE
from tests.utils.chat import CHAT_PATH, sse_events
from tests.utils.recommend import liked_profile_app

pytestmark = pytest.mark.slow



def check_grounding(answer: dict[str, Any], evidence: set[str]) -> None:
    assert answer["model"] == "smollm2-135m-instruct"
    assert set(answer["cited_event_ids"]) <= evidence
    if answer["source"] == "model":
        # Kept only when it cites the trace or declines.
        assert answer["cited_event_ids"] or DECLINE.lower() in answer["answer"].lower()
        for bad in answer["dropped_citations"]:
            assert f"[{bad}]" not in answer["answer"]
    else:
        assert answer["answer"].startswith(DECLINE) and answer["grounded"] is True


def test_the_embedded_model_answers_why_from_the_trace_only(
        tmp_path: Path, embedded_llm: Any) -> None:
    with liked_profile_app(tmp_path, embedded_llm) as (t, consumed):

        rec = t.get("/v1/users/u1/recommendations", params={"k": 3}).json()
        assert rec["source"] == "profile", rec
        top = rec["items"][0]
        evidence = {f"e-{i}" for i in consumed}
        question = {"message": f"Why was {top['title']} recommended?", "item_id": top["item_id"]}

        r = t.post(CHAT_PATH.format(rec["recommendation_id"]), json=question)
        assert r.status_code == 200, r.text
        answer = r.json()
        check_grounding(answer, evidence)
        assert answer["output_tokens"] > 0  # the real model was asked

        # Streamed through the real OpenAI-compatible server: tokens, then the checked answer.
        r = t.post(CHAT_PATH.format(rec["recommendation_id"]), json=question,
                   headers={"Accept": "text/event-stream"})
        assert r.status_code == 200, r.text
        events = sse_events(r.text)
        assert [n for n, _ in events][-1] == "done" and len(events) >= 3
        check_grounding(events[-1][1], evidence)
        turns = t.get(CHAT_PATH.format(rec["recommendation_id"])).json()["turns"]
        assert [turn["streamed"] for turn in turns] == [False, True]
        # The stream ends with a usage chunk (stream_usage), so streamed turns count tokens too.
        assert turns[1]["prompt_tokens"] > 0 and turns[1]["output_tokens"] > 0, turns[1]
