"""Grouping, naming and a profile refresh end to end with the real embedded model
(llama.cpp + SmolLM2-135M), real MiniLM embeddings and a real Chroma folder."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.core.config import Settings
from service.profiles.models import ProfileFacetRow
from service.profiles.reads import unpack
from service.summaries.calls import OUTPUT_TOKEN_BUDGET, PROMPT_TOKEN_BUDGET
from service.summaries.schemas import InterestSummary
from tests.utils.api import NOW, activity_for, app_client, event, item, make_tenant
from tests.utils.fakes import Clock

pytestmark = pytest.mark.slow


def test_real_model_names_groups_with_real_evidence(tmp_path: Path, embedded_llm: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False)
    with app_client(settings, embedded_llm) as client:
        t = make_tenant(client, "acme")
        events = activity_for(t)
        r = t.post("/v1/users/u1/profile/refresh")
        assert r.status_code == 200, r.text
        profile = r.json()
        run = t.get("/v1/users/u1/summaries").json()["runs"][0]
        assert run["status"] == "ok"
        summary = InterestSummary.model_validate(run["summary"])
        assert summary.facets and summary.narrative, run
        real_ids = {e["event_id"] for e in events}
        by_evidence = {tuple(f.evidence): f for f in summary.facets}
        assert by_evidence[("r1", "r2", "l3")].polarity == "like"
        assert by_evidence[("r4",)].polarity == "avoid"
        for facet in summary.facets:
            assert set(facet.evidence) <= real_ids and facet.group is not None
            for title in ("Alien", "Blade Runner", "The Martian", "The Notebook"):
                assert title not in facet.label
        assert run["model"] == "smollm2-135m-instruct"
        assert 100 < run["prompt_tokens"] <= PROMPT_TOKEN_BUDGET
        assert 10 < run["output_tokens"] <= OUTPUT_TOKEN_BUDGET
        assert run["latency_ms"] > 0
        assert client.get("/readyz").json()["checks"]["llm"] == "ok"

        # The profile built from it: facets with real evidence, each with its vector.
        assert profile["version"] == 1 and profile["facets"] and profile["stale"] is False
        for facet in profile["facets"]:
            assert {e["event_id"] for e in facet["evidence"]} <= real_ids
        with client.app.state.container.sessions() as session:  # type: ignore[attr-defined]
            stored = {r.facet_id: unpack(r.embedding)
                      for r in session.scalars(select(ProfileFacetRow))}
        assert {f["facet_id"] for f in profile["facets"]} <= set(stored)
        assert all(len(v) == 384 and any(v) for v in stored.values())  # MiniLM vectors
        version = t.get("/v1/users/u1/profile/history").json()["versions"][0]
        assert version["model"] == "smollm2-135m-instruct"
        assert version["summary_run_id"] == run["run_id"]
        assert version["prompt_name"] == "name_interest_group"


JAZZ = [
    ("Kind of Blue", "Miles Davis and his sextet play modal jazz", ["jazz", "trumpet", "modal"]),
    ("Giant Steps", "John Coltrane's fast bebop changes on tenor saxophone",
     ["jazz", "saxophone", "bebop"]),
    ("Thelonious Monk biography", "The life of the bebop pianist", ["jazz", "bebop", "piano"]),
    ("The Miles Davis story", "A documentary on the jazz trumpeter", ["jazz", "trumpet"]),
    ("Blue Note sessions", "Hard bop recordings from the Blue Note label",
     ["jazz", "hard bop", "saxophone"]),
    ("Saxophone colossus", "Sonny Rollins plays tenor saxophone", ["jazz", "saxophone"]),
    ("Birdland live", "Charlie Parker's bebop quintet live in New York",
     ["jazz", "bebop", "saxophone"]),
    ("Jazz piano trios", "Bill Evans and the modern piano trio", ["jazz", "piano"]),
]
HIKING = [
    ("TrailMaster boots", "Waterproof hiking boots for rocky trails",
     ["hiking", "outdoor gear", "boots"]),
    ("Summit 40L backpack", "A light backpack for day hikes", ["hiking", "outdoor gear"]),
    ("Alpine trail guide", "Guide to mountain trails and hut-to-hut hikes",
     ["hiking", "trails", "mountains"]),
    ("Carbon trekking poles", "Folding poles for long hikes", ["hiking", "outdoor gear"]),
    ("Trail running vest", "Hydration vest for trail running", ["trails", "outdoor gear"]),
    ("National park trails", "The best hiking trails in national parks",
     ["hiking", "trails"]),
    ("Ultralight tent", "A two-person tent for backpacking trips",
     ["hiking", "camping", "outdoor gear"]),
    ("Merino hiking socks", "Socks for long days on the trail", ["hiking", "outdoor gear"]),
]


def test_the_profile_follows_a_user_from_jazz_to_hiking(tmp_path: Path,
                                                        embedded_llm: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False)
    clock = Clock(NOW - timedelta(days=30))
    with app_client(settings, embedded_llm, clock=clock) as client:
        t = make_tenant(client, "acme")
        catalog = [item(f"jazz{n}", title=title, description=text, tags=tags, category="music")
                   for n, (title, text, tags) in enumerate(JAZZ)]
        catalog += [item(f"hike{n}", title=title, description=text, tags=tags,
                         category="outdoor") for n, (title, text, tags) in enumerate(HIKING)]
        assert t.put("/v1/items", json={"items": catalog}).status_code == 200

        def send(*events: dict[str, Any]) -> None:
            assert t.post("/v1/events", json={"events": list(events)}).status_code == 200

        now = clock()
        send(*[event("u1", kind, f"jazz{n}", ts=now - timedelta(hours=20 - 2 * n - k),
                     event_id=f"jazz-{kind}-{n}")
               for n in range(8) for k, kind in enumerate(("view", "like"))])
        first = t.post("/v1/users/u1/profile/refresh")
        assert first.status_code == 200, first.text
        jazz_ids = {f"jazz-{kind}-{n}" for n in range(8) for kind in ("view", "like")}
        [jazz] = [f for f in first.json()["facets"]
                  if {e["event_id"] for e in f["evidence"]} & jazz_ids]
        assert jazz["polarity"] == "like"

        now = clock.advance(days=7)
        send(*[event("u1", "view", f"hike{n}", ts=now - timedelta(hours=20 - n),
                     event_id=f"hike-view-{n}") for n in range(8)],
             *[event("u1", "purchase", f"hike{n}", ts=now - timedelta(hours=5 - n),
                     event_id=f"hike-buy-{n}") for n in range(3)])
        second = t.post("/v1/users/u1/profile/refresh")
        assert second.status_code == 200, second.text
        facets = second.json()["facets"]
        hiking_ids = {f"hike-view-{n}" for n in range(8)} | {f"hike-buy-{n}" for n in range(3)}
        hiking = [f for f in facets if f["polarity"] == "like"
                  and {e["event_id"] for e in f["evidence"]} & hiking_ids]
        assert hiking, facets
        words = " ".join(f"{f['label']} {f['description']}" for f in hiking).casefold()
        assert any(w in words for w in ("hik", "trail", "outdoor")), hiking
        cited = {e["event_id"] for f in hiking for e in f["evidence"]}
        assert {"hike-buy-0", "hike-buy-1", "hike-buy-2"} <= cited
        assert not cited & jazz_ids  # hiking facets cite hiking events only
        [still] = [f for f in facets if f["facet_id"] == jazz["facet_id"]]
        assert still["strength"] < jazz["strength"]  # decaying, a week on
        assert still["label"] == jazz["label"]
