"""Step 3: the list itself, built one of three ways, each ending in scored, diversified picks.

- `rank_hybrid` (`hybrid.py`; the tenant has a trained artifact): candidates from the
  facets and every trained source, one `features.py` row each, scored by the learned
  ranker (the fixed blend of `ranking.py` without one), avoid-facets drop what lies
  squarely on them, MMR picks the list, and `reasons.py` gives each pick the grounded
  reason a person can best follow (a facet reason names one of the facets
  `facet_tags.py` allows).
- `rank_from_profile` (`profile_list.py`; no artifact yet): facet retrieval only, scored
  by the best like-facet's strength x similarity, as before models existed.
- `rank_popular` (`popular.py`; nothing personal to go on): the tenant's popular items
  in tiers.

This module holds what the three share: the request, the picks and the ranked list the
trace is written from. No LLM here; `service.py` may replace a few template sentences
afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from service.ingest.evidence import EvidenceEvent
from service.recommend.candidates import ActiveFacet
from service.recommend.ranking import Matrix, normalized
from service.recommend.schemas import (
    Because,
    ExplanationCall,
    ExplanationSource,
    PopularTier,
    Source,
)
from service.recommend.trace import CandidateRow

EVIDENCE_SHOWN = 5  # evidence events per `because`, closest to the item first

Explain = Literal["template", "llm"]


@dataclass(frozen=True)
class RecommendationRequest:
    k: int = 10
    explain: Explain = "template"
    category: str | None = None


@dataclass
class Pick:
    """One item of the list being built, with everything the trace keeps about it."""

    item_id: str
    title: str
    score: float
    because: Because | None
    explanation: str
    explanation_source: ExplanationSource = "template"
    explanation_problem: str | None = None
    llm: ExplanationCall | None = None  # the model call, when one was made
    given: list[EvidenceEvent] = field(default_factory=list)  # the evidence shown, as data
    facet_description: str = ""
    popular_tier: PopularTier | None = None


@dataclass
class Ranked:
    source: Source
    picks: list[Pick]
    candidates: Sequence[CandidateRow]
    excluded: dict[str, int]
    quotas: dict[str, int] = field(default_factory=dict)
    calibration_target: dict[str, float] | None = None  # hybrid lists calibrated to it


def similarity_matrix(facets: Sequence[ActiveFacet], items: Matrix) -> Matrix:
    if not facets:
        return np.zeros((0, len(items)), dtype=np.float32)
    sims: Matrix = normalized(np.stack([f.vector for f in facets])) @ items.T
    return sims


def rounded_columns(matrix: Matrix) -> list[list[float]]:
    """One list per candidate (column), facets in trace order; rounded for storage."""
    rows: list[list[float]] = np.round(matrix.T.astype(np.float64), 4).tolist()
    return rows


@dataclass
class FacetEvidence:
    """A facet's evidence that still exists: item events with their vectors, and
    text events (searches, declarations), newest first."""

    with_items: list[EvidenceEvent]
    vectors: Matrix
    text_only: list[EvidenceEvent]
    newest_first: list[float]  # minus each item event's timestamp: the tie-break

    @classmethod
    def of(cls, facet: ActiveFacet, evidence: dict[str, EvidenceEvent],
           vectors: dict[str, npt.NDArray[np.float32]]) -> FacetEvidence:
        own = [evidence[e] for e in facet.evidence if e in evidence]
        with_items = [e for e in own if e.item_id in vectors]
        text_only = sorted((e for e in own if e.item_id not in vectors),
                           key=lambda e: e.ts, reverse=True)
        matrix = (np.stack([vectors[e.item_id or ""] for e in with_items]) if with_items
                  else np.zeros((0, 0), dtype=np.float32))
        return cls(with_items, matrix, text_only, [-e.ts.timestamp() for e in with_items])

    @property
    def has_evidence(self) -> bool:
        """Whether the facet has evidence to cite."""
        return bool(self.with_items or self.text_only)

    def closest_to(self, item: npt.NDArray[np.float32]) -> list[EvidenceEvent]:
        """Up to EVIDENCE_SHOWN events, the items most like `item` first."""
        ranked = self.with_items
        if ranked:
            sims = (self.vectors @ item).tolist()
            order = sorted(range(len(ranked)), key=lambda n: (-sims[n], self.newest_first[n]))
            ranked = [ranked[n] for n in order]
        return (ranked + self.text_only)[:EVIDENCE_SHOWN]
