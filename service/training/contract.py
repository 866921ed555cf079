"""The shapes the training domain and the recommender share (DESIGN.md §2).

Training (`service/training/`) fits per-tenant models from the tenant's own events and
saves them as one versioned artifact; serving (`service/recommend/`) loads it once and
asks it for candidates, features and ranker scores. This module holds only the types
both sides agree on, so either can change its insides without touching the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

# Where a candidate came from. "facet" is retrieval from the user's profile (Chroma);
# the others are the tenant's trained models.
CandidateSource = Literal["facet", "cooccurrence", "transition", "sequence", "content",
                          "popular"]
MODEL_SOURCES: tuple[CandidateSource, ...] = ("cooccurrence", "transition", "sequence",
                                              "content", "popular")
ALL_SOURCES: tuple[CandidateSource, ...] = ("facet", *MODEL_SOURCES)
# The newest item events a recommendation request reads (the sequence model reads 50);
# training's pseudo-facets take their avoid signal from as many.
MAX_HISTORY = 200


@dataclass(frozen=True)
class UserEvent:
    """One of the user's item events as the models read it (oldest first in a history)."""

    item_id: str
    ts: float  # unix seconds
    weight: float  # how positive, in [0, 1]; 0 for a low rating, a dislike or a skip
    event_id: str = ""  # the user's own event id: what an event-based reason cites


@dataclass(frozen=True)
class SourceHit:
    """One candidate from one source.

    `via` is the index (into the history given) of the user's event that led to the item,
    when the source can say (co-occurrence: the positive item it neighbours; transition:
    the item it follows; content: the liked item it is most like).

    `vias` are every event that contributed a substantial share of the item's score,
    largest contribution first, so `via` is `vias[0]` (co-occurrence and transitions sum
    over several recent events; see `service.training.data.neighbour_scores`). A source
    that names one event leaves `vias` out and gets `(via,)`. Event-based reasons cite
    them.
    """

    score: float
    rank: int  # 0 = the source's best
    via: int | None = None
    vias: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.vias and self.via is not None:
            object.__setattr__(self, "vias", (self.via,))
        elif self.vias and self.via != self.vias[0]:
            raise ValueError(f"via {self.via} is not the largest of vias {self.vias}")


@dataclass(frozen=True)
class FacetSignal:
    """A like- or avoid-facet as the ranker's features see it, the same at training time
    (pseudo-facets from grouped history) and at serving time (the stored profile)."""

    strength: float  # decayed to now
    long_term: bool
    avoid: bool
    centroid: npt.NDArray[np.float32]  # unit mean of its evidence items' vectors
    items: tuple[str, ...] = ()  # its evidence items (a like-facet's; for `facet_cf_*`)


@dataclass
class ModelMeta:
    """What a saved artifact says about itself."""

    version: str
    tenant_id: int
    trained_at: str  # ISO 8601 UTC
    events_used: int
    users: int
    items: int
    sources: list[str]  # the sources this artifact can answer
    ranker: bool  # a learned ranker was trained (else the fixed blend applies)
    heldout: dict[str, float] = field(default_factory=dict)  # e.g. {"ndcg@10": ...}
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. why a source was skipped
    # The tenant's newest event id (`Event.id`) when training read its events: item events
    # above it are what is new since (`training.jobs.tenants_due`). None in artifacts
    # saved before it was kept, which are judged by counting events instead.
    last_event_id: int | None = None


class TenantModels(Protocol):
    """A loaded artifact. Immutable once loaded; a new version replaces it whole."""

    meta: ModelMeta

    def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                   now: float) -> dict[CandidateSource, dict[str, SourceHit]]:
        """Up to n items per model source, none in `exclude`."""
        ...

    def candidates_if_kept(self, history: list[UserEvent], n: int, exclude: set[str],
                           now: float) -> dict[CandidateSource, dict[str, SourceHit]] | None:
        """`candidates`' answer when the personal sources' answer for this history is
        kept (only popular is then worked out), else None: asking `candidates` will
        run the models."""
        ...

    def popularity(self, item_ids: list[str], now: float
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(recent, all-time) popularity of each item, each scaled to [0, 1]."""
        ...

    def cooccurrence_means(self, groups: Sequence[Sequence[str]], columns: Sequence[str]
                           ) -> npt.NDArray[np.float64]:
        """For each group of row items, the mean over its distinct items of the
        co-occurrence source's neighbour score of each column item (groups x columns; an
        item unknown, or a pair that does not neighbour, counts 0)."""
        ...

    def rank_scores(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        """The learned ranker's score per feature row, or None without a ranker."""
        ...


@dataclass
class InteractionLog:
    """A tenant's item events as parallel arrays, sorted by (ts, arrival order).

    Built by `service.training.data` from the database or from plain rows (the eval);
    every model's `fit` reads this one shape.
    """

    user_ids: list[str]  # user index -> user id
    item_ids: list[str]  # item index -> item id
    users: npt.NDArray[np.int32]
    items: npt.NDArray[np.int32]
    ts: npt.NDArray[np.float64]  # unix seconds
    weight: npt.NDArray[np.float32]  # as `UserEvent.weight`
    event_ids: list[str]

    def __len__(self) -> int:
        return len(self.users)
