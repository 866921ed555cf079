"""Step 4: each item's `because`, the grounded reason a person can best follow.

An item may be backed by several things at once: like-facets (with their evidence) and
one or more trained sources. Each candidate reason gets a strength on one scale, the
source's score divided by the best score that source gave anyone in this list (for a
facet, strength x similarity divided by the list's best); a reason that can cite the
user's own events and has at least `MIN_SHARE` is grounded, and one of those is given
(which one: below):

- facet: each like-facet whose tags the item carries enough of, a reason of its own
  (`facet_tags.reason_facets`; an item without tags has only the facet scoring put
  nearest), citing its evidence closest to the item first (as before models existed);
- co_occurrence, transition: the liked events among the source's `vias`. Both sources
  sum a score over several of the user's recent events (the liked items the item
  neighbours, the last items it follows), and `vias` are those whose contribution is at
  least `VIA_SHARE` (half) of the largest one, largest first, at most three
  (`service.training.data.neighbour_scores`): every event cited really carries a
  substantial share of the item's score;
- content: the `via` history item it is most like (else the newest positive event);
- sequence: the user's most recent positive events.

A reason below `MIN_SHARE` of its source's best is too weak to give ("much like Dune"
for a cookbook); popularity grounds nothing. An item left without a reason has no
`because` and says it is popular.

Given the item vectors (`related`: cosine of a cited item to the recommended one), the
reason whose lead citation is most related to the item wins, strength breaking ties
(then the order above, facets first): "people who loved Toy Story loved this" under a
war film is true of the data and still no explanation a person can follow. Every reason
compared is grounded and carries at least `MIN_SHARE` of its source's best, so this
picks, among true reasons, the one a person can follow best; the closer the lead, the
more surely another reader of the two items finds them related too (`RELATED_MIN`).
Without vectors the strongest wins. A reason reads as related (`Reason.readable`) when
its lead's cosine is at least `RELATED_MIN`, and a readable reason always wins over one
that is not; a facet whose evidence is only text events (searches, declarations) has no
item to read as related, and its own similarity to the item orders it among those. A
sequence reason cites its recent events most related first. A co-occurrence or
transition reason leads with its most related contributor, the others after it by
contribution: since each of them is a substantial part of why the item scored, leading
with the one a person can follow picks among true reasons. Picking the most related
among arbitrary events would not be: it would cite an event the score does not rest on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from service.ingest.evidence import EvidenceEvent
from service.recommend.candidates import ActiveFacet, UserHistory
from service.recommend.schemas import ReasonKind
from service.training.contract import CandidateSource, SourceHit
from service.training.data import POSITIVE

MIN_SHARE = 0.25  # of the source's best score in the list, for a reason to be given
SEQUENCE_EVIDENCE = 2  # recent positive events a sequence reason cites
CONTRIBUTOR_EVIDENCE = 3  # liked `vias` a co-occurrence or transition reason cites, at most
# all-MiniLM-L6-v2 cosine of two catalog items' texts from which they read as related.
# Pairs sharing a genre set sit around 0.56 (median) and a fifth of random pairs reach
# 0.5 (evals/faithfulness.py). The line sits a margin above 0.5 because the service
# embeds its own text of an item (title, category, tags with genres among them): of
# 50,000 random MovieLens pairs at >= 0.5 on those vectors, 78% were >= 0.5 under the
# eval's text of the same items ("Genres: ..., Tags: ..."); at >= 0.55, 96%. A reason
# the service calls readable should read so to another reader of the two items too.
RELATED_MIN = 0.55
REASON_ORDER: tuple[ReasonKind, ...] = ("facet", "co_occurrence", "transition", "sequence",
                                        "content")
SOURCE_OF: dict[ReasonKind, CandidateSource] = {
    "facet": "facet", "co_occurrence": "cooccurrence", "transition": "transition",
    "sequence": "sequence", "content": "content"}


@dataclass
class Reason:
    kind: ReasonKind
    evidence: list[EvidenceEvent]  # never empty
    facet: ActiveFacet | None = None
    similarity: float | None = None
    values: dict[str, float | None] = field(default_factory=dict)  # ratings, by event id
    # The lead citation reads as related to the item (cosine >= RELATED_MIN); set by
    # `best_reason` when it is given the item vectors.
    readable: bool = False


@dataclass
class FacetOption:
    """A like-facet an item's facet reason may name (`facet_tags.reason_facets`)."""

    facet: ActiveFacet
    score: float  # the facet's strength x its similarity to the item
    similarity: float
    # The cosine to the item of the facet's evidence item closest to it, the citation a
    # facet reason leads with; None when no evidence item has a vector.
    closeness: float | None
    # Its evidence, closest to the item first (never empty); asked of the given one only.
    evidence: Callable[[], Sequence[EvidenceEvent]]


@dataclass
class ReasonInputs:
    """What the reasons of one list are chosen from."""

    history: UserHistory
    best_score: Mapping[CandidateSource, float]  # each source's best score in the list
    facet_best: float  # the list's best like-facet strength x similarity


def _event(history: UserHistory, n: int) -> EvidenceEvent:
    """The cited event; its item's title is filled in once the list's reasons are known."""
    e = history.cited[n]
    return EvidenceEvent(e.event_id, e.type, e.ts, e.item_id, None, None)


def recent_positives(history: UserHistory, limit: int) -> list[int]:
    """History positions of the newest positive events, newest first."""
    found: list[int] = []
    for n in range(len(history.events) - 1, -1, -1):
        if history.events[n].weight >= POSITIVE:
            found.append(n)
            if len(found) == limit:
                break
    return found


def event_reason(kind: ReasonKind, hit: SourceHit, inputs: ReasonInputs) -> Reason | None:
    """The reason one model source gives for an item, if the user's events ground it."""
    history = inputs.history

    def liked(n: int | None) -> bool:
        # Only an event the user liked grounds "people who liked it liked this": a
        # transition from an item rated 1/5 is no reason to offer the next one.
        return (n is not None and 0 <= n < len(history.cited)
                and history.events[n].weight >= POSITIVE)

    positions: list[int]
    if kind == "sequence":
        positions = recent_positives(history, SEQUENCE_EVIDENCE)
    elif kind in ("co_occurrence", "transition"):
        positions = [n for n in hit.vias if liked(n)][:CONTRIBUTOR_EVIDENCE]
    elif kind == "content" and hit.via is not None and liked(hit.via):
        positions = [hit.via]
    elif kind == "content":
        positions = recent_positives(history, 1)
    else:
        positions = []
    if not positions:
        return None
    evidence = [_event(history, n) for n in positions]
    return Reason(kind, evidence,
                  values={history.cited[n].event_id: history.cited[n].value for n in positions})


Related = Callable[[str | None], float | None]  # cited item id -> cosine to the item


def _lead_with_most_related(evidence: list[EvidenceEvent], related: Related) -> None:
    """Move the most related cited event to the front, the rest keeping their order
    (by contribution); ties and items without a vector leave the largest first."""
    def closeness(n: int) -> float:
        found = related(evidence[n].item_id)
        return float("-inf") if found is None else found

    lead = max(range(len(evidence)), key=closeness)
    evidence.insert(0, evidence.pop(lead))


def _closeness(found: float | None) -> float:
    return float("-inf") if found is None else found


def best_reason(
    hits: Mapping[CandidateSource, SourceHit], inputs: ReasonInputs,
    facets: Sequence[FacetOption], related: Related | None = None,
) -> Reason | None:
    """The grounded reason to give for an item (see the module notes), or None when
    nothing the user did backs it. Each of `facets` is a candidate reason of its own;
    only the given one's evidence is ordered."""
    Key = tuple[bool, float, float, int]
    best: tuple[Key, Callable[[], Reason]] | None = None
    for order, kind in enumerate(REASON_ORDER):
        found: list[tuple[float, bool, float, Callable[[], Reason]]] = []
        if kind == "facet":
            for option in facets:
                strength = (option.score / inputs.facet_best if inputs.facet_best > 0
                            and option.score > 0 else 0.0)
                if related is None:
                    closeness = 0.0
                elif option.closeness is None:
                    # Only text events back it (searches, declarations): nothing to read
                    # as related, and its own similarity to the item orders it.
                    closeness = option.similarity
                else:
                    closeness = option.closeness
                readable = (related is not None and option.closeness is not None
                            and option.closeness >= RELATED_MIN)
                found.append((strength, readable, closeness, partial(_facet_reason, option)))
        else:
            hit = hits.get(SOURCE_OF[kind])
            if hit is None:
                continue
            top = inputs.best_score.get(SOURCE_OF[kind], 0.0)
            reason = event_reason(kind, hit, inputs)
            if reason is None:
                continue
            readable, closeness = False, 0.0  # without vectors, strength decides
            if related is not None:
                if kind == "sequence":  # the recent events it cites, most related first
                    reason.evidence.sort(key=lambda e: -_closeness(related(e.item_id)))
                elif kind in ("co_occurrence", "transition"):
                    _lead_with_most_related(reason.evidence, related)
                lead = related(reason.evidence[0].item_id)
                readable = lead is not None and lead >= RELATED_MIN
                closeness = _closeness(lead)
            found.append((hit.score / top if top > 0 else 0.0, readable, closeness,
                          partial(_given, reason)))
        for strength, readable, closeness, make in found:
            key: Key = (readable, closeness, strength, -order)
            if strength >= MIN_SHARE and (best is None or key > best[0]):
                best = (key, make)
    if best is None:
        return None
    given = best[1]()
    given.readable = best[0][0]
    return given


def _facet_reason(option: FacetOption) -> Reason:
    return Reason("facet", list(option.evidence()), option.facet, option.similarity)


def _given(reason: Reason) -> Reason:
    return reason
