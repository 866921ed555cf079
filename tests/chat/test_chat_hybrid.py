"""The chat about a hybrid list: event-based reasons (co-occurrence, transitions, ...) reach
the model as trace data, their evidence is citable, and the fallback says them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from service.chat.fallback import EVENT_REASONS
from service.chat.schemas import DECLINE
from service.core.config import Settings
from service.recommend.explain import REASON_TEXT
from service.vectors.embeddings import Embedder
from tests.utils.api import event
from tests.utils.chat import ChatApp, make_chat_app
from tests.utils.recommend import send_crowd, train_models


@pytest.fixture
def app(settings: Settings, embedder: Embedder) -> Iterator[ChatApp]:
    yield from make_chat_app(settings, embedder)


@pytest.mark.slow  # trains the LightGBM ranker: tens of seconds on busy cores
def test_the_chat_answers_about_an_event_based_reason(app: ChatApp) -> None:
    send_crowd(app.t, app.clock)
    now = app.clock()
    app.send("u1", *[event("u1", "like", i, event_id=f"u1-{i}", ts=now - timedelta(hours=3 - n))
                     for n, i in enumerate(["alien", "dune", "solaris"])])
    train_models(app.t, app.settings)
    rec = app.recommend("u1", k=4)
    assert rec["source"] == "hybrid"
    item = next(i for i in rec["items"] if i["because"] and i["because"]["kind"] != "facet")
    because = item["because"]
    cited = because["evidence"][0]["event_id"]
    assert cited.startswith("u1-")

    reply = f"You liked {because['evidence'][0]['title']} [{cited}], and others went on to it."
    app.model.answer = lambda prompt: reply
    body = app.ask(rec["recommendation_id"], message="Why this one?", item_id=item["item_id"])
    assert (body["source"], body["grounded"], body["cited_event_ids"]) == (
        "model", True, [cited])
    data = str(app.model.chat_calls[-1][-1].content).split("<trace>")[1].split("</trace>")[0]
    assert REASON_TEXT[because["kind"]][1] in data  # the reason, as the model read it
    assert f"[{cited}]" in data and "crowd-" not in data  # no other user's events

    # A model that cites nothing is overruled by the trace's own event-based reason.
    app.model.answer = lambda prompt: "It is a great film."
    body = app.ask(rec["recommendation_id"], message="Why?", item_id=item["item_id"])
    assert body["source"] == "fallback" and body["answer"].startswith(DECLINE)
    assert EVENT_REASONS[because["kind"]] in body["answer"]
    assert body["cited_event_ids"] and all(c.startswith("u1-") for c in body["cited_event_ids"])

    # Without an item, the fallback names the list's own event-based reasons.
    body = app.ask(rec["recommendation_id"], message="What's the weather in Paris?")
    assert body["source"] == "fallback" and "not items chosen" not in body["answer"]
    assert body["cited_event_ids"] and all(c.startswith("u1-") for c in body["cited_event_ids"])
    assert any(phrase in body["answer"] for phrase in EVENT_REASONS.values())
