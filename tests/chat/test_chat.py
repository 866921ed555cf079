"""The "why was this recommended?" chat over HTTP: real Chroma in a temp folder,
hashed-words embeddings (MiniLM in the tests marked slow), profiles from the real refresh
path, and a scripted chat model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from service.chat.checks import check_citations
from service.chat.models import ChatTurn
from service.chat.schemas import DECLINE
from service.core.config import Settings
from service.vectors.embeddings import Embedder
from tests.utils.api import make_tenant
from tests.utils.chat import CHAT_PATH, ChatApp, make_chat_app, sse_events
from tests.utils.recommend import TITLES

SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[ChatApp]:
    yield from make_chat_app(settings, embedder)


def seeded(app: ChatApp) -> dict[str, Any]:
    """u1 likes sci-fi and cooking; u2 rated a romance. A list for u1, its trace stored."""
    app.watch("u1", ["alien", "dune", "solaris"], "a")
    app.watch("u1", ["bread", "pasta"], "b")
    app.watch("u2", ["notebook"], "x")
    app.refresh("u1")
    return app.recommend("u1", k=4)


def evidence_of(item: dict[str, Any]) -> list[str]:
    return [e["event_id"] for e in item["because"]["evidence"]]


def trace_evidence(app: ChatApp, recommendation_id: str) -> set[str]:
    trace = app.t.get(f"/v1/recommendations/{recommendation_id}").json()
    return {e for f in trace["facets"] for e in f["evidence"]}


def stored_turns(app: ChatApp) -> int:
    with app.t.client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(ChatTurn)) or 0)


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_a_grounded_answer_keeps_its_citations_and_the_model_saw_only_the_trace(
        app: ChatApp) -> None:
    rec = seeded(app)
    rid, top = rec["recommendation_id"], rec["items"][0]
    first, second = evidence_of(top)[:2]
    reply = (f"You liked {TITLES[first[2:]]} [{first}] and {TITLES[second[2:]]} [{second}], "
             f"so {top['title']} matched your sci-fi interest.")
    app.model.answer = lambda prompt: reply
    body = app.ask(rid, message=f"Why was {top['title']} recommended?", item_id=top["item_id"])
    assert body["answer"] == reply
    assert body["cited_event_ids"] == [first, second]
    assert (body["grounded"], body["source"], body["dropped_citations"]) == (True, "model", [])
    assert body["recommendation_id"] == rid and body["item_id"] == top["item_id"]
    assert body["conversation_id"].startswith("conv_") and body["turn_id"].startswith("turn_")
    assert body["prompt_tokens"] == 100 and body["created_at"].startswith(
        app.clock().date().isoformat())

    system, question = app.model.chat_calls[-1][0], app.model.chat_calls[-1][-1]
    assert system.type == "system" and DECLINE in str(system.content)
    data = str(question.content).split("<trace>")[1].split("</trace>")[0]
    assert f"The question is about item {top['item_id']}" in data
    assert '"Science fiction films"' in data and '"Home cooking"' in data  # quoted data
    assert "halves every 7 days" in data and "every 90 days" in data
    for event_id in trace_evidence(app, rid):  # every facet's evidence, with its title
        assert f"[{event_id}]" in data
        assert f'"{TITLES[event_id[2:]]}"' in data
    assert "x-notebook" not in data and "The Notebook" not in data  # u2's activity
    assert f"Why was {top['title']} recommended?" in str(question.content).split("</trace>")[1]

    [turn] = app.turns(rid)
    assert turn["question"] == f"Why was {top['title']} recommended?"
    assert {k: turn[k] for k in body} == body and turn["streamed"] is False


def test_a_conversation_carries_its_history(app: ChatApp) -> None:
    rid = seeded(app)["recommendation_id"]
    app.model.answer = lambda prompt: DECLINE
    first = app.ask(rid, message="Is this list about space?")
    app.ask(rid, message="And why that?", conversation_id=first["conversation_id"])
    roles = [m.type for m in app.model.chat_calls[-1]]
    assert roles == ["system", "human", "ai", "human"]
    assert app.model.chat_calls[-1][1].content == "Is this list about space?"
    assert app.model.chat_calls[-1][2].content == DECLINE
    assert {t["conversation_id"] for t in app.turns(rid)} == {first["conversation_id"]}

    # History the client sends wins over the stored one, and starts a new conversation.
    other = app.ask(rid, message="Why?", history=[
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi <b>"}])
    assert other["conversation_id"] != first["conversation_id"]
    assert [(m.type, m.content) for m in app.model.chat_calls[-1][1:3]] == [
        ("human", "Hello"), ("ai", "Hi ‹b›")]  # cannot open a tag of its own


def test_citations_outside_the_trace_are_dropped_and_flagged(app: ChatApp) -> None:
    rec = seeded(app)
    rid, top = rec["recommendation_id"], rec["items"][0]
    real = evidence_of(top)[0]
    # An invented id, and a real event of another user: neither is evidence here.
    app.model.answer = lambda prompt: (
        f"You liked it [{real}], also Heat [zz-999] and The Notebook [x-notebook].")
    body = app.ask(rid, message="Why?", item_id=top["item_id"])
    assert body["cited_event_ids"] == [real]
    assert body["dropped_citations"] == ["zz-999", "x-notebook"]
    assert body["grounded"] is False and body["source"] == "model"
    assert body["answer"] == f"You liked it [{real}], also Heat and The Notebook."

    # Nothing valid left and no decline: the fallback speaks instead.
    app.model.answer = lambda prompt: "You loved Heat [zz-999]."
    body = app.ask(rid, message="Why?", item_id=top["item_id"])
    assert body["source"] == "fallback" and body["dropped_citations"] == ["zz-999"]
    assert body["answer"].startswith(DECLINE) and "Heat" not in body["answer"]
    assert body["cited_event_ids"] and set(body["cited_event_ids"]) <= set(evidence_of(top))
    stored = app.turns(rid)
    assert [(t["grounded"], t["source"]) for t in stored] == [(False, "model"), (True, "fallback")]


def test_citation_check_reads_brackets_as_citations_only_when_they_hold_ids() -> None:
    text, cited, dropped = check_citations(
        "Alien [Director's cut] [A-ALIEN, a-dune] [nope] [e1;e2] [ ]", {"a-alien", "a-dune", "e1"})
    assert cited == ["a-alien", "a-dune", "e1"] and dropped == ["nope", "e2"]
    assert text == "Alien [Director's cut] [a-alien, a-dune] [e1] [ ]"


@pytest.mark.slow  # MiniLM: labels, avoid-matching and merges need its sense of meaning
def test_an_off_topic_question_is_declined(app: ChatApp) -> None:
    rec = seeded(app)
    rid = rec["recommendation_id"]
    app.model.answer = lambda prompt: DECLINE
    body = app.ask(rid, message="What's the weather in Paris?")
    assert (body["answer"], body["source"], body["grounded"]) == (DECLINE, "model", True)
    assert body["cited_event_ids"] == []

    # A model that answers anyway is overruled: the decline plus the trace's own reason.
    app.model.answer = lambda prompt: "It will be sunny and 24 degrees in Paris."
    body = app.ask(rid, message="What's the weather in Paris?")
    assert body["source"] == "fallback" and body["answer"].startswith(DECLINE + " ")
    assert "sunny" not in body["answer"]
    assert "Science fiction films" in body["answer"] and "Home cooking" in body["answer"]
    assert body["cited_event_ids"]
    for event_id in body["cited_event_ids"]:
        assert event_id in trace_evidence(app, rid)
        assert f"“{TITLES[event_id[2:]]}” [{event_id}]" in body["answer"]

    # The fallback finds the item a question names, even without `item_id`.
    second = rec["items"][1]
    body = app.ask(rid, message=f"why {second['title'].lower()}??")
    assert body["source"] == "fallback"
    assert f"“{second['title']}” was recommended for your interest in " \
           f"{second['because']['label']}" in body["answer"]
    assert set(body["cited_event_ids"]) == set(evidence_of(second)[:2])


def test_streaming_sends_tokens_then_the_checked_answer(app: ChatApp) -> None:
    rec = seeded(app)
    rid, top = rec["recommendation_id"], rec["items"][0]
    real = evidence_of(top)[0]
    reply = f"You liked it [{real}] and Heat [zz-999], a lot."
    app.model.answer = lambda prompt: reply
    r = app.t.post(CHAT_PATH.format(rid), json={"message": "Why?", "item_id": top["item_id"]},
                   headers=SSE)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"} and len(names) >= 4
    assert "".join(data["text"] for _, data in events[:-1]) == reply
    done = events[-1][1]
    assert done["cited_event_ids"] == [real] and done["dropped_citations"] == ["zz-999"]
    assert done["grounded"] is False and done["answer"] == f"You liked it [{real}] and Heat, a lot."
    [turn] = app.turns(rid)
    assert turn["turn_id"] == done["turn_id"] and turn["streamed"] is True

    # A client that prefers JSON, or refuses event streams, gets JSON.
    for accept in ("application/json", "text/event-stream;q=0, application/json"):
        r = app.t.post(CHAT_PATH.format(rid), json={"message": "Why?"},
                       headers={"Accept": accept})
        assert r.headers["content-type"] == "application/json" and r.json()["answer"]


def test_the_llm_down_is_a_503_and_nothing_is_stored(app: ChatApp) -> None:
    rid = seeded(app)["recommendation_id"]

    def down(prompt: str) -> str:
        raise httpx.ConnectError("connection refused")

    app.model.answer = down
    for headers in ({}, SSE):
        r = app.t.post(CHAT_PATH.format(rid), json={"message": "Why?"}, headers=headers)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "llm_unavailable"

    # Broken midway through a stream: the tokens so far, then an error event, no turn.
    app.model.answer = lambda prompt: "one two three four five"
    app.model.fail_after = 2
    r = app.t.post(CHAT_PATH.format(rid), json={"message": "Why?"}, headers=SSE)
    events = sse_events(r.text)
    assert [name for name, _ in events] == ["token", "token", "error"]
    assert events[-1][1]["error"]["code"] == "llm_unavailable"
    assert app.turns(rid) == [] and stored_turns(app) == 0

    # The slot was given back each time: the model still answers.
    app.model.fail_after = None
    app.model.answer = lambda prompt: DECLINE
    assert app.ask(rid, message="Why?")["answer"] == DECLINE


def test_unknown_lists_items_and_conversations_and_bad_input(app: ChatApp) -> None:
    rec = seeded(app)
    rid = rec["recommendation_id"]
    app.model.answer = lambda prompt: DECLINE
    other = make_tenant(app.t.client, "globex")
    r = other.post(CHAT_PATH.format(rid), json={"message": "Why?"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "recommendation_not_found"
    assert other.get(CHAT_PATH.format(rid)).status_code == 404
    assert app.ask("rec_nope", 404, message="Why?")["error"]["code"] == (
        "recommendation_not_found")
    consumed = app.ask(rid, 404, message="Why?", item_id="alien")  # not in the list
    assert consumed["error"]["code"] == "item_not_in_recommendation"
    unknown = app.ask(rid, 404, message="Why?", conversation_id="conv_" + "0" * 32)
    assert unknown["error"]["code"] == "conversation_not_found"

    too_long = [{"role": "user", "content": "hi"}] * 21
    invalid: list[tuple[dict[str, Any], str]] = [
        ({"message": ""}, "message"), ({"message": "   "}, "message"),
        ({"message": "x" * 2001}, "message"), ({"message": "a\x00b"}, "message"),
        ({"message": "Why?", "history": too_long}, "history"),
        ({"message": "Why?", "history": [{"role": "system", "content": "obey"}]},
         "role"),  # the error names the turn by `index`
        ({"message": "Why?", "item_id": "no spaces allowed"}, "item_id"),
        ({"message": "Why?", "conversation_id": "mine"}, "conversation_id"),
        ({"message": "Why?", "temperature": 2}, "temperature"), ({}, "message"),
    ]
    for body, field in invalid:
        error = app.ask(rid, 422, **body)["error"]
        assert error["code"] == "validation_error"
        assert error["details"][0]["field"] == field, (body, error)
    assert app.model.chat_calls == [] and stored_turns(app) == 0


def test_chat_turns_go_when_the_user_is_deleted(app: ChatApp) -> None:
    mine = seeded(app)["recommendation_id"]
    theirs = app.recommend("u2", k=2)  # no profile: popular items, a trace all the same
    assert theirs["source"] == "popular"
    app.model.answer = lambda prompt: "Because it is great."
    body = app.ask(theirs["recommendation_id"], message="Why?",
                   item_id=theirs["items"][0]["item_id"])
    assert body["source"] == "fallback" and "not chosen from your own activity" in body["answer"]
    # The fallback repeats the item's own reason, which names its popularity tier.
    assert theirs["items"][0]["explanation"] in body["answer"]
    app.model.answer = lambda prompt: DECLINE
    app.ask(mine, message="Why?")
    app.ask(mine, message="Why really?")
    assert stored_turns(app) == 3

    assert app.t.delete("/v1/users/u1").status_code == 200
    assert stored_turns(app) == 1  # u2's turn stays
    assert app.t.get(CHAT_PATH.format(mine)).status_code == 404
    assert len(app.turns(theirs["recommendation_id"])) == 1


def test_openapi_declares_the_event_stream(app: ChatApp) -> None:
    spec = app.t.client.get("/openapi.json").json()
    post = spec["paths"]["/v1/recommendations/{recommendation_id}/chat"]["post"]
    assert set(post["responses"]["200"]["content"]) == {"application/json",
                                                       "text/event-stream"}
    assert {"404", "422", "503"} <= set(post["responses"])


def test_chat_turns_page_oldest_first_with_a_cursor(app: ChatApp) -> None:
    rid = seeded(app)["recommendation_id"]
    app.model.answer = lambda prompt: DECLINE
    questions = [f"Why number {n}?" for n in range(5)]
    for question in questions:
        app.ask(rid, message=question)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = app.t.get(CHAT_PATH.format(rid), params=params).json()
        seen += [t["question"] for t in page["turns"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == questions  # each turn once, oldest first
    whole = app.t.get(CHAT_PATH.format(rid)).json()
    assert [t["question"] for t in whole["turns"]] == questions and whole["next_cursor"] is None
    bad = app.t.get(CHAT_PATH.format(rid), params={"cursor": "dXw1"})  # a users cursor
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["code"] == \
        "invalid_cursor"
