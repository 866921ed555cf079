"""Summarizer logic with scripted fakes: validation, evidence, repair, failures, budget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from service.core.config import Settings
from service.llm.fake import ScriptedChatModel, scripted
from service.llm.runtime import LLMRuntime
from service.summaries.schemas import InterestSummary
from service.summaries.service import validate_summary
from tests.conftest import NOW, ApiTenant, activity_for, app_client, event, item, make_tenant

REFS = {"E1": "ev_a", "E2": "ev_b", "E3": "ev_c"}


def facet(label: str = "Science fiction films", evidence: list[str] | None = None,
          **kw: Any) -> dict[str, Any]:
    return {"label": label, "description": "Rates sci-fi highly.", "strength": 0.8,
            "horizon": "long", "polarity": "like",
            "evidence": ["E1", "E2"] if evidence is None else evidence, **kw}


def test_evidence_is_mapped_to_event_ids_and_invented_refs_dropped() -> None:
    summary, problem = validate_summary(
        {"facets": [facet(evidence=["E1", "E9", "ev_admin", "E1"]),
                    facet("Crypto", evidence=["E42"])], "narrative": "Likes sci-fi."}, REFS)
    assert summary is not None and problem == ""
    assert [f.label for f in summary.facets] == ["Science fiction films"]
    assert summary.facets[0].evidence == ["ev_a"]


def test_labels_are_cleaned_bounded_and_deduplicated() -> None:
    summary, _ = validate_summary({"facets": [
        facet('  "Space\n\n   opera"  '), facet("space OPERA"), facet("x" * 200),
        facet("!!"), facet("Horror", strength=85), facet("Noir", strength=-3),
        facet("E1", description="Rates sci-fi highly."), facet("E2, E3", description="E2"),
    ], "narrative": "Likes sci-fi. Likes sci-fi. Likes sci-fi. Dislikes romance."}, REFS)
    assert summary is not None
    labels = [f.label for f in summary.facets]
    assert labels[0] == "Space opera"
    # "E1" takes its description as label; "E2, E3" with description "E2" is dropped.
    assert labels[-1] == "Rates sci-fi highly."
    assert len(labels) == 5 and all(len(lab) <= 60 for lab in labels)
    strengths = {f.label: f.strength for f in summary.facets}
    assert strengths["Horror"] == pytest.approx(0.85) and strengths["Noir"] == 0.0
    assert summary.narrative == "Likes sci-fi. Dislikes romance."


@pytest.mark.parametrize("parsed", [None, [], {"facets": "many"}, {"narrative": "no facets"},
                                    {"facets": [facet(evidence=["E77"])]}])
def test_unusable_answers_are_rejected_with_a_reason(parsed: Any) -> None:
    summary, problem = validate_summary(parsed, REFS)
    assert summary is None and problem


def test_schema_allows_only_the_given_references() -> None:
    from service.summaries.schemas import summary_json_schema

    schema = summary_json_schema(["E1", "E2"])
    items = schema["properties"]["facets"]["items"]
    assert items["properties"]["evidence"]["items"]["enum"] == ["E1", "E2"]
    assert schema["properties"]["facets"]["maxItems"] >= 1
    assert items["additionalProperties"] is False


# --- through HTTP, with a scripted model in place of the server -----------------------


@pytest.fixture
def scripted_tenant(settings: Settings) -> Iterator[tuple[ApiTenant, ScriptedChatModel]]:
    model = scripted([])
    with app_client(settings, LLMRuntime(settings, chat_model=model)) as client:
        yield make_tenant(client, "acme"), model


def good_answer(evidence: list[str]) -> str:
    return json.dumps({"facets": [facet(evidence=evidence)], "narrative": "A sci-fi fan."})


def test_a_summary_is_stored_with_its_costs_and_leaves_the_profile_alone(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel],
) -> None:
    t, model = scripted_tenant
    activity_for(t)
    model.replies = [good_answer(["E1", "E2"])]
    r = t.post("/v1/users/u1/summaries")
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "ok" and run["attempts"] == 1
    assert run["summary"]["facets"][0]["evidence"] == ["r1", "r2"]  # E1, E2 oldest first
    assert run["prompt_name"] == "summarize_interests" and run["prompt_version"] == "2"
    assert run["prompt_tokens"] > 0 and run["output_tokens"] > 0
    assert run["events_read"] == 5
    assert (run["first_event_id"], run["last_event_id"]) == ("r1", "s5")
    status = t.get("/v1/users/u1").json()
    # A summary is a preview: only a profile refresh brings the user up to date.
    assert status["stale"] is True and status["events_since_refresh"] == 5
    assert status["last_run"]["run_id"] == run["run_id"]
    assert t.get("/v1/users/u1/profile").json()["version"] == 0

    # The prompt: labelled, delimited, untrusted data, references only.
    prompt = "\n".join(str(m.content) for m in model.calls[0])
    block = prompt.rsplit("<activity>", 1)[1].split("</activity>")[0]
    assert len(block.strip().splitlines()) == 5 and "E5 |" in block and "r1" not in block
    assert '"Alien"' in block and "rated 5/5" in block and '"space exploration films"' in block


def test_one_repair_retry_fixes_a_bad_answer(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel],
) -> None:
    t, model = scripted_tenant
    activity_for(t)
    model.replies = ["{not json", good_answer(["E3"])]
    run = t.post("/v1/users/u1/summaries").json()
    assert run["status"] == "ok" and run["attempts"] == 2
    assert run["summary"]["facets"][0]["evidence"] == ["l3"]
    repair_turn = str(model.calls[1][-1].content)
    assert "could not be used" in repair_turn


def test_garbage_twice_fails_visibly_and_changes_nothing(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel],
) -> None:
    t, model = scripted_tenant
    activity_for(t)
    model.replies = [good_answer(["E1"])]
    first = t.post("/v1/users/u1/summaries").json()
    t.post("/v1/events", json={"events": [event("u1", "like", "m1")]})

    model.replies = ["{not json", json.dumps({"facets": [facet(evidence=["E99"])]})]
    r = t.post("/v1/users/u1/summaries")
    assert r.status_code == 502 and r.json()["error"]["code"] == "llm_invalid_output"
    runs = t.get("/v1/users/u1/summaries").json()["runs"]
    assert [x["status"] for x in runs] == ["failed", "ok"]
    assert runs[0]["error_code"] == "llm_invalid_output" and runs[0]["attempts"] == 2
    assert runs[1] == first  # the last good summary is untouched
    status = t.get("/v1/users/u1").json()
    assert status["stale"] is True and status["events_since_refresh"] == 6
    assert status["event_count"] == 6


@pytest.mark.parametrize("failure", [
    openai.APIConnectionError(request=httpx.Request("POST", "http://x")),
    openai.APITimeoutError(request=httpx.Request("POST", "http://x")),
    httpx.ConnectError("refused"),
])
def test_a_dead_model_server_is_a_503_and_loses_nothing(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel], failure: Exception
) -> None:
    t, model = scripted_tenant
    activity_for(t)
    model.replies = [failure]
    r = t.post("/v1/users/u1/summaries")
    assert r.status_code == 503 and r.json()["error"]["code"] == "llm_unavailable"
    runs = t.get("/v1/users/u1/summaries").json()["runs"]
    assert runs[0]["status"] == "failed" and runs[0]["error_code"] == "llm_unavailable"
    assert t.get("/v1/users/u1").json()["stale"] is True
    assert len(t.get("/v1/users/u1/events").json()["events"]) == 5


def test_the_budget_keeps_the_newest_and_strongest(settings: Settings) -> None:
    small = settings.model_copy(update={"summary_prompt_tokens": 700})
    model = scripted([good_answer(["E1"])])
    with app_client(small, LLMRuntime(small, chat_model=model)) as client:
        t = make_tenant(client, "acme")
        t.put("/v1/items", json={"items": [item(f"v{n}", title=f"Video number {n}")
                                           for n in range(150)] + [item("buy", title="Tent")]})
        views = [event("u1", "view", f"v{n}", ts=NOW - timedelta(hours=300 - n),
                       event_id=f"view{n}") for n in range(150)]
        old_purchase = event("u1", "purchase", "buy", ts=NOW - timedelta(hours=299),
                             event_id="purchase")
        t.post("/v1/events", json={"events": [*views, old_purchase]})
        run = t.post("/v1/users/u1/summaries").json()
    from service.llm.tokens import count_tokens

    prompt_text = "\n".join(str(m.content) for m in model.calls[0])
    assert count_tokens(prompt_text) <= 700
    assert 10 < run["events_read"] < 151
    assert '"Tent"' in prompt_text  # strong beats old
    assert '"Video number 149"' in prompt_text and '"Video number 0"' not in prompt_text


def test_summaries_of_unknown_or_eventless_users(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel],
) -> None:
    t, _ = scripted_tenant
    assert t.post("/v1/users/ghost/summaries").status_code == 404
    assert t.get("/v1/users/ghost").status_code == 404


def test_deleting_a_user_removes_their_runs(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel],
) -> None:
    from sqlalchemy import func, select

    from service.summaries.models import SummaryRun

    t, model = scripted_tenant
    activity_for(t)
    model.replies = [good_answer(["E1"])]
    t.post("/v1/users/u1/summaries")
    assert t.delete("/v1/users/u1").status_code == 200
    with t.client.app.state.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(SummaryRun)) == 0


def test_stored_summary_round_trips(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel], tmp_path: Path
) -> None:
    t, model = scripted_tenant
    activity_for(t)
    model.replies = [good_answer(["E1", "E2"])]
    run = t.post("/v1/users/u1/summaries").json()
    InterestSummary.model_validate(run["summary"])
    assert t.get("/v1/users/u1/summaries").json()["runs"][0] == run


def test_an_answer_cut_off_at_the_length_limit_is_repaired(
    scripted_tenant: tuple[ApiTenant, ScriptedChatModel],
) -> None:
    from openai.types.chat import ChatCompletion
    from openai.types.completion_usage import CompletionUsage

    t, model = scripted_tenant
    activity_for(t)
    cut = ChatCompletion(id="c", choices=[], created=0, model="m", object="chat.completion",
                         usage=CompletionUsage(prompt_tokens=50, completion_tokens=1024,
                                               total_tokens=1074))
    model.replies = [openai.LengthFinishReasonError(completion=cut), good_answer(["E2"])]
    run = t.post("/v1/users/u1/summaries").json()
    assert run["status"] == "ok" and run["attempts"] == 2
    assert run["output_tokens"] >= 1024
    assert "cut off" in str(model.calls[1][-1].content)
