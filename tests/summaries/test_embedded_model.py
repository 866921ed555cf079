"""The summarizer and a profile refresh end to end with the real embedded model
(llama.cpp + SmolLM2-135M), real MiniLM embeddings and a real Chroma folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings
from service.summaries.schemas import InterestSummary
from tests.conftest import activity_for, app_client, make_tenant

pytestmark = pytest.mark.slow


def test_real_model_writes_schema_valid_facets_with_real_evidence(
    tmp_path: Path, embedded_llm: Any
) -> None:
    settings = Settings(data_dir=tmp_path / "data", refresh_worker=False)
    with app_client(settings, embedded_llm) as client:
        t = make_tenant(client, "acme")
        events = activity_for(t)
        # A 135M model sometimes writes nothing usable even after the repair turn; the
        # contract then is a recorded 502. Prompts carry the date, so outputs vary by day:
        # allow three tries, and require one success.
        for _ in range(3):
            r = t.post("/v1/users/u1/profile/refresh")
            assert r.status_code in (200, 502), r.text
            if r.status_code == 200:
                break
        assert r.status_code == 200, r.text
        profile = r.json()
        run = t.get("/v1/users/u1/summaries").json()["runs"][0]
        assert run["status"] == "ok"
        summary = InterestSummary.model_validate(run["summary"])
        assert summary.facets, run
        real_ids = {e["event_id"] for e in events}
        for facet in summary.facets:
            assert facet.evidence and set(facet.evidence) <= real_ids
            assert 0.0 <= facet.strength <= 1.0
        assert run["model"] == "smollm2-135m-instruct"
        assert run["prompt_tokens"] > 100 and run["output_tokens"] > 10
        assert run["latency_ms"] > 0
        ready = client.get("/readyz").json()
        assert ready["checks"]["llm"] == "ok"

        # The profile built from it: facets with real evidence, embedded in Chroma.
        assert profile["version"] == 1 and profile["facets"] and profile["stale"] is False
        for facet in profile["facets"]:
            assert {e["event_id"] for e in facet["evidence"]} <= real_ids
            assert all(e["type"] is not None for e in facet["evidence"])
        vectors = client.app.state.vectors  # type: ignore[attr-defined]
        assert {f["facet_id"] for f in profile["facets"]} <= vectors.ids(1, "facets")
        version = t.get("/v1/users/u1/profile/history").json()["versions"][0]
        assert version["model"] == "smollm2-135m-instruct"
        assert version["summary_run_id"] == run["run_id"]
