"""Choosing an item's `because` (service/recommend/reasons.py): pure logic, no stores."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import sparse

from service.ingest.evidence import EvidenceEvent
from service.recommend.candidates import ActiveFacet, HistoryEvent, UserHistory
from service.recommend.facet_tags import FACET_TAG_MATCH, ProfileTags, reason_facets
from service.recommend.reasons import (
    MIN_SHARE,
    RELATED_MIN,
    FacetOption,
    ReasonInputs,
    Related,
    best_reason,
)
from service.training.contract import CandidateSource, SourceHit, UserEvent
from service.training.cooccurrence import CoOccurrence
from service.training.models import BaseModels
from service.training.transitions import Transitions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(*items: tuple[str, float]) -> UserHistory:
    """Events on these (item, weight) pairs, oldest first, one day apart."""
    events, cited = [], []
    for n, (item, weight) in enumerate(items):
        ts = T0.timestamp() + n * 86400
        events.append(UserEvent(item_id=item, ts=ts, weight=weight, event_id=f"e{n}"))
        cited.append(HistoryEvent(f"e{n}", "rating", datetime.fromtimestamp(ts, UTC), item,
                                  5.0 * weight))
    return UserHistory(events, cited, {i for i, _ in items})


H = history(("toy-story", 1.0), ("alien", 1.0), ("heat", 1.0), ("bad", 0.0))
Hits = dict[CandidateSource, SourceHit]
BEST: dict[CandidateSource, float] = {
    "cooccurrence": 1.0, "transition": 1.0, "sequence": 1.0, "content": 1.0}


def cosines(found: dict[str, float]) -> Related:
    """Cited item -> its cosine to the recommended item, as rank_hybrid computes it."""
    return lambda item_id: found.get(item_id or "")


def test_the_strongest_grounded_reason_wins_without_vectors() -> None:
    inputs = ReasonInputs(H, BEST, 0.0)
    hits: Hits = {"cooccurrence": SourceHit(0.9, 0, via=0), "transition": SourceHit(0.6, 3, via=1)}
    reason = best_reason(hits, inputs, [])
    assert reason is not None and reason.kind == "co_occurrence"
    assert [e.event_id for e in reason.evidence] == ["e0"]


def test_a_reason_below_its_sources_share_or_from_a_disliked_event_is_not_given() -> None:
    inputs = ReasonInputs(H, BEST, 0.0)
    weak: Hits = {"cooccurrence": SourceHit(MIN_SHARE / 2, 40, via=0)}
    assert best_reason(weak, inputs, []) is None
    disliked: Hits = {"transition": SourceHit(1.0, 0, via=3)}  # follows an item rated 0
    assert best_reason(disliked, inputs, []) is None


def test_the_reason_with_the_most_related_lead_citation_wins() -> None:
    inputs = ReasonInputs(H, BEST, 0.0)
    # The weaker reason comes first in REASON_ORDER, so order alone never picks the
    # stronger one: where strength decides below, it is strength.
    hits: Hits = {"cooccurrence": SourceHit(0.5, 0, via=0), "transition": SourceHit(0.9, 3, via=1)}
    cosine = {"toy-story": RELATED_MIN + 0.1, "alien": RELATED_MIN - 0.2}
    reason = best_reason(hits, inputs, [], cosines(cosine))
    assert reason is not None and reason.kind == "co_occurrence" and reason.readable
    assert reason.evidence[0].item_id == "toy-story"
    # Both related: the more related lead still wins over the stronger reason.
    cosine["alien"] = RELATED_MIN + 0.05
    reason = best_reason(hits, inputs, [], cosines(cosine))
    assert reason is not None and reason.kind == "co_occurrence" and reason.readable
    # Neither related: the closer lead wins, and the reason says it is not readable.
    cosine = {"toy-story": RELATED_MIN - 0.1, "alien": RELATED_MIN - 0.2}
    reason = best_reason(hits, inputs, [], cosines(cosine))
    assert reason is not None and reason.kind == "co_occurrence" and not reason.readable
    # Leads equally related: strength decides.
    cosine = {"toy-story": RELATED_MIN + 0.1, "alien": RELATED_MIN + 0.1}
    reason = best_reason(hits, inputs, [], cosines(cosine))
    assert reason is not None and reason.kind == "transition"
    # A lead without a vector loses even to one that reads as opposed to the item.
    reason = best_reason(hits, inputs, [], cosines({"toy-story": -0.3}))
    assert reason is not None and reason.kind == "co_occurrence" and not reason.readable
    # No vectors for any cited item: strength decides (an unreadable reason beats none).
    reason = best_reason(hits, inputs, [], cosines({}))
    assert reason is not None and reason.kind == "transition" and not reason.readable
    # Without vectors at all: strength decides.
    reason = best_reason(hits, inputs, [])
    assert reason is not None and reason.kind == "transition" and not reason.readable


def test_a_sequence_reason_cites_its_most_related_recent_event_first() -> None:
    inputs = ReasonInputs(H, BEST, 0.0)
    hits: Hits = {"sequence": SourceHit(1.0, 0)}
    reason = best_reason(hits, inputs, [])
    assert reason is not None and [e.item_id for e in reason.evidence] == ["heat", "alien"]
    reason = best_reason(hits, inputs, [],
                              cosines({"heat": 0.1, "alien": 0.7}))
    assert reason is not None and [e.item_id for e in reason.evidence] == ["alien", "heat"]


def test_a_co_occurrence_reason_leads_with_its_most_related_contributor() -> None:
    inputs = ReasonInputs(H, BEST, 0.0)
    hit = SourceHit(0.9, 0, via=2, vias=(2, 0, 1))  # heat gave the most, then toy-story
    reason = best_reason({"cooccurrence": hit}, inputs, [])
    assert reason is not None and [e.item_id for e in reason.evidence] == [
        "heat", "toy-story", "alien"]  # without vectors: largest contribution first
    assert set(reason.values) == {"e2", "e0", "e1"}
    reason = best_reason({"cooccurrence": hit}, inputs, [],
                              cosines({"heat": 0.1, "toy-story": 0.3, "alien": 0.7}))
    assert reason is not None and [e.item_id for e in reason.evidence] == [
        "alien", "heat", "toy-story"]  # the most related, then by contribution
    # Nothing known about any of them: the largest still leads.
    reason = best_reason({"cooccurrence": hit}, inputs, [], cosines({}))
    assert reason is not None and reason.evidence[0].item_id == "heat"
    # A related second contributor makes the reason readable: it now beats a stronger
    # transition whose only citation is unrelated.
    hits: Hits = {"cooccurrence": SourceHit(0.5, 3, via=2, vias=(2, 1)),
                  "transition": SourceHit(0.9, 0, via=0)}
    reason = best_reason(hits, inputs, [],
                              cosines({"heat": 0.1, "toy-story": 0.2, "alien": 0.7}))
    assert reason is not None and reason.kind == "co_occurrence"
    assert [e.item_id for e in reason.evidence] == ["alien", "heat"]


def test_an_event_reason_cites_at_most_three_contributors() -> None:
    long = history(*[(f"i{n}", 1.0) for n in range(5)])
    hit = SourceHit(1.0, 0, via=4, vias=(4, 3, 2, 1, 0))
    reason = best_reason({"transition": hit}, ReasonInputs(long, BEST, 0.0), [])
    assert reason is not None and [e.item_id for e in reason.evidence] == ["i4", "i3", "i2"]


def test_a_disliked_contributor_is_never_cited_however_related() -> None:
    inputs = ReasonInputs(H, BEST, 0.0)
    hit = SourceHit(1.0, 0, via=3, vias=(3, 1))  # "bad" (rated 0) gave the most
    for related in (None, cosines({"bad": 0.99, "alien": 0.1})):
        reason = best_reason({"transition": hit}, inputs, [], related)
        assert reason is not None and [e.item_id for e in reason.evidence] == ["alien"]


# The catalog of H plus the item recommended, "x"; H's events are its first four.
CATALOG = ["toy-story", "alien", "heat", "bad", "x"]


def _into_x(**into: float) -> sparse.csr_matrix:
    """A source's item-item matrix with only edges from the named items to "x"."""
    rows = [CATALOG.index(item.replace("_", "-")) for item in into]
    return sparse.csr_matrix((np.array(list(into.values()), dtype=np.float32),
                              (rows, [4] * len(rows))), shape=(5, 5))


def _hit(models: BaseModels, source: CandidateSource) -> SourceHit:
    found = models.candidates(H.events, 5, H.consumed, T0.timestamp())
    return found[source]["x"]


def test_a_reason_cites_only_contributors_with_a_substantial_share() -> None:
    """Through the trained source: co-occurrence weighs the newest liked item 1, the next
    0.9, the one before 0.81, so "x" gets 0.9 from alien, 0.6 from heat and 0.405 from
    toy-story, under half of the largest."""
    co = CoOccurrence()
    co.matrix = _into_x(toy_story=0.5, alien=1.0, heat=0.6)
    hit = _hit(BaseModels(CATALOG, cooccurrence=co), "cooccurrence")
    assert hit.vias == (1, 2)
    inputs = ReasonInputs(H, BEST, 0.0)
    reason = best_reason({"cooccurrence": hit}, inputs, [])
    assert reason is not None and [e.item_id for e in reason.evidence] == ["alien", "heat"]
    # Toy Story contributed, and reads as the most related; it is still not a reason.
    reason = best_reason({"cooccurrence": hit}, inputs, [],
                              cosines({"toy-story": 0.95, "heat": 0.7, "alien": 0.1}))
    assert reason is not None and [e.item_id for e in reason.evidence] == ["heat", "alien"]


def test_a_transition_reason_skips_a_substantial_but_disliked_contributor() -> None:
    """Transitions weigh the last three items 1, 0.5, 0.25 whatever the rating: "bad"
    gives "x" the most, heat half of it, alien a quarter (under the share)."""
    transitions = Transitions()
    transitions.matrix = _into_x(alien=1.0, heat=1.0, bad=1.0)
    hit = _hit(BaseModels(CATALOG, transition=transitions), "transition")
    assert hit.vias == (3, 2)
    for related in (None, cosines({"bad": 0.99, "alien": 0.9, "heat": 0.1})):
        reason = best_reason({"transition": hit}, ReasonInputs(H, BEST, 0.0), [],
                                  related)
        assert reason is not None and [e.item_id for e in reason.evidence] == ["heat"]


def _facet(facet_id: str, strength: float) -> ActiveFacet:
    return ActiveFacet(facet_id=facet_id, label=facet_id, description="", polarity="like",
                       horizon="short", pinned=False, strength=strength,
                       stored_strength=strength, strength_at=datetime(2026, 1, 1, tzinfo=UTC),
                       evidence=(),
                       vector=np.zeros(3, dtype=np.float32))


def test_a_facet_reason_names_a_facet_whose_tags_the_item_carries() -> None:
    animation = {"animation": 1.0, "children": 0.8, "category:movie": 1.0}
    action = {"action": 1.0, "adventure": 0.5, "category:movie": 1.0}
    profile = ProfileTags(target={}, per_facet=[animation, action, {}])
    likes = [_facet("animated", 0.6), _facet("action", 0.3), _facet("untagged", 0.9)]
    # Category aside: an item carrying "animation" has 1.0 / 1.8 of the first's mass.
    assert profile.match(0, ["animation", "category:movie"]) == pytest.approx(1 / 1.8)
    assert profile.match(0, ["category:movie", "crime"]) == 0.0
    assert profile.match(2, ["animation"]) is None and profile.match(0, []) is None
    # The strongest facet by strength x match, among those matched enough.
    assert reason_facets(["animation", "action"], likes, 1, profile) == [0, 1]
    assert reason_facets(["action", "adventure"], likes, 0, profile) == [1]
    # Tags rule every facet out: no facet reason at all (a crime film is not "animated").
    assert reason_facets(["crime", "category:movie"], likes, 0, profile) == []
    # Nothing to compare (an untagged item): the facet scoring chose stays, alone.
    assert reason_facets([], likes, 2, profile) == [2]
    assert reason_facets([], likes, -1, profile) == []
    assert FACET_TAG_MATCH > 0


def test_a_facets_evidence_and_tags_are_kept_per_user_token_and_evidence() -> None:
    """A like-facet's evidence matrix and tags are worked out once per (user, catalog
    token, evidence ids); another user, token or evidence works them out again, without
    a token nothing is kept, and `forget_kept` drops them. The profile's mix weighs each
    facet's tagged items by its share of the strength."""
    from dataclasses import replace
    from types import SimpleNamespace
    from typing import cast

    from service.recommend.candidates import CatalogRow, forget_kept
    from service.recommend.facet_tags import profile_tags
    from service.recommend.hybrid import _facet_backing
    from service.users.models import User

    forget_kept()
    user = cast(User, SimpleNamespace(tenant_id=1, id=7, created_at=T0))
    other = cast(User, SimpleNamespace(tenant_id=1, id=8, created_at=T0))
    evidence = {f"e{n}": EvidenceEvent(f"e{n}", "rating", T0, f"i{n}", f"I{n}", None)
                for n in range(3)}
    rows = {"i0": CatalogRow("I0", "v", "movie", ("animation", "category:movie")),
            "i1": CatalogRow("I1", "v", "movie", ("animation", "comedy")),
            "i2": CatalogRow("I2", "v", "movie", ())}
    vectors = {f"i{n}": np.eye(3, dtype=np.float32)[n] for n in range(3)}
    facet = replace(_facet("animated", 0.6), evidence=("e0", "e1", "e2"))
    first = _facet_backing(user, "t1", facet, evidence, rows, vectors)
    assert first.tag_sets == (("animation", "category:movie"), ("animation", "comedy"))
    assert first.shares == {"animation": 1.0, "category:movie": 0.5, "comedy": 0.5}
    assert [e.event_id for e in first.evidence.with_items] == ["e0", "e1", "e2"]
    assert first.evidence.vectors.shape == (3, 3)
    assert _facet_backing(user, "t1", facet, evidence, rows, vectors) is first
    for again in [_facet_backing(user, "t2", facet, evidence, rows, vectors),
                  _facet_backing(other, "t1", facet, evidence, rows, vectors),
                  _facet_backing(user, "t1", replace(facet, evidence=("e0",)), evidence,
                                 rows, vectors),
                  _facet_backing(user, None, facet, evidence, rows, vectors)]:
        assert again is not first
    assert _facet_backing(user, None, facet, evidence, rows, vectors) is not (
        _facet_backing(user, None, facet, evidence, rows, vectors))
    forget_kept()
    assert _facet_backing(user, "t1", facet, evidence, rows, vectors) is not first

    # Two facets, 3:1 in strength: each tagged item of the first weighs 0.75 / 2, the
    # second's one item 0.25.
    action = _facet("action", 0.2)
    profile = profile_tags([facet, action], [first.tag_sets, (("action",),)],
                           [first.shares, {"action": 1.0}])
    assert profile.target == pytest.approx({"animation": 0.75, "category:movie": 0.375,
                                            "comedy": 0.375, "action": 0.25})
    assert profile.per_facet == [first.shares, {"action": 1.0}]


def test_each_facets_lead_cosine_is_its_closest_evidence_item() -> None:
    """`_lead_cosines`: per facet, the best cosine of its evidence items to each pool row,
    from one product for all facets; None for a facet whose evidence has no items."""
    from service.recommend.hybrid import _lead_cosines
    from service.recommend.lists import FacetEvidence

    rng = np.random.default_rng(3)

    def backing(n: int) -> FacetEvidence:
        events = [EvidenceEvent(f"e{k}", "rating", T0, f"i{k}", None, None) for k in range(n)]
        vectors = rng.normal(size=(n, 4)).astype(np.float32)
        return FacetEvidence(events, vectors if n else np.zeros((0, 0), np.float32), [],
                             [0.0] * n)

    facets = [backing(3), backing(0), backing(1), backing(5)]
    pool = rng.normal(size=(6, 4)).astype(np.float32)
    got = _lead_cosines(facets, pool)
    assert got[1] is None
    for found, facet in zip(got, facets, strict=True):
        if found is not None:
            assert found == pytest.approx((facet.vectors @ pool.T).max(axis=0).tolist(),
                                          rel=1e-5)
    assert _lead_cosines([backing(0)], pool) == [None]
    assert _lead_cosines(facets, pool[:0]) == [[], None, [], []]


def _option(facet: ActiveFacet, score: float, closeness: float | None, item: str
            ) -> FacetOption:
    evidence = [EvidenceEvent(f"ev-{item}", "rating", T0, item, item, None)]
    return FacetOption(facet, score, 1.0, closeness, lambda: evidence)


def test_among_facets_the_one_whose_evidence_reads_closest_is_named() -> None:
    weak, strong = _facet("family", 0.3), _facet("animated", 0.8)
    inputs = ReasonInputs(H, BEST, 0.8)  # the list's best like strength x similarity
    # The weaker facet first, so where strength decides below, it is strength.
    options = [_option(weak, 0.3, RELATED_MIN + 0.1, "up"),
               _option(strong, 0.8, RELATED_MIN - 0.1, "shrek")]
    related = cosines({})  # facets carry their own closeness
    reason = best_reason({}, inputs, options, related)
    assert reason is not None and reason.facet is weak and reason.readable
    assert [e.item_id for e in reason.evidence] == ["up"]
    # Without vectors, the stronger facet.
    reason = best_reason({}, inputs, options)
    assert reason is not None and reason.facet is strong and not reason.readable
    # A facet below MIN_SHARE of the list's best is no reason, however related.
    options[0] = _option(weak, 0.8 * MIN_SHARE / 2, RELATED_MIN + 0.3, "up")
    reason = best_reason({}, inputs, options, related)
    assert reason is not None and reason.facet is strong and not reason.readable
    # A facet beats an event reason whose lead reads less related, and loses to a closer one.
    hits: Hits = {"cooccurrence": SourceHit(1.0, 0, via=1, vias=(1,))}  # alien
    options[1] = _option(strong, 0.8, RELATED_MIN + 0.2, "shrek")
    reason = best_reason(hits, inputs, options, cosines({"alien": RELATED_MIN + 0.1}))
    assert reason is not None and reason.kind == "facet"
    reason = best_reason(hits, inputs, options, cosines({"alien": RELATED_MIN + 0.3}))
    assert reason is not None and reason.kind == "co_occurrence"


def test_a_facet_backed_only_by_text_events_is_ordered_by_its_similarity() -> None:
    """A facet whose evidence is searches or declarations has no item to read as related:
    its own similarity to the item orders it among the unreadable reasons."""
    search = [EvidenceEvent("ev-search", "search", T0, None, None, "space opera")]
    declared = FacetOption(_facet("sci-fi", 0.8), 0.8, 0.6, None, lambda: search)
    inputs = ReasonInputs(H, BEST, 0.8)
    unrelated: Hits = {"cooccurrence": SourceHit(1.0, 0, via=0, vias=(0,))}  # toy-story
    reason = best_reason(unrelated, inputs, [declared], cosines({"toy-story": 0.1}))
    assert reason is not None and reason.kind == "facet" and not reason.readable
    assert reason.evidence == search
    # A readable event reason still wins over it.
    reason = best_reason(unrelated, inputs, [declared], cosines({"toy-story": RELATED_MIN}))
    assert reason is not None and reason.kind == "co_occurrence" and reason.readable
