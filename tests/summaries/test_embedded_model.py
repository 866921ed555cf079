"""The summarizer end to end with the real embedded model (llama.cpp + SmolLM2-135M)."""

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
    settings = Settings(data_dir=tmp_path / "data")
    with app_client(settings, embedded_llm) as client:
        t = make_tenant(client, "acme")
        events = activity_for(t)
        # A 135M model sometimes writes nothing usable even after the repair turn; the
        # contract then is a recorded 502. Prompts carry the date, so outputs vary by day:
        # allow three tries, and require one success.
        for _ in range(3):
            r = t.post("/v1/users/u1/summaries")
            assert r.status_code in (201, 502), r.text
            if r.status_code == 201:
                break
        assert r.status_code == 201, r.text
        run = r.json()
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
