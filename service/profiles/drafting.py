"""Drafting new facets from a named summary: which events back each, how strongly, and
the text its vector encodes (label, description, top tags: never titles or years)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.core.schemas import DESCRIPTION_MAX, LABEL_MAX, Polarity
from service.ingest.models import Event
from service.profiles.merge import NewFacet
from service.summaries.activity import Activity
from service.summaries.grouping import YEAR
from service.summaries.injection import reads_as_instructions
from service.summaries.schemas import InterestSummary
from service.vectors.embeddings import Embedder

DECLARED_STRENGTH = 0.8  # what a user says about themselves counts nearly as much as it can
FACET_TEXT_TAGS = 5


def facet_text(label: str, description: str, tags: Sequence[str] = ()) -> str:
    """What a facet's vector encodes: label, description and the group's top tags.

    Never titles or years, so that retrieval follows the topic rather than one film.
    """
    topics = [t for t in tags if not YEAR.search(t)][:FACET_TEXT_TAGS]
    if not topics:
        return f"{label}. {description}" if description else label
    parts = [label, description.rstrip(". "), "Topics: " + ", ".join(topics)]
    return ". ".join(p for p in parts if p)


def new_facets(
    summary: InterestSummary, activity: Activity, read_through: int, embedder: Embedder,
    rating_max: float = 5.0,
) -> list[NewFacet]:
    """One facet per named group, plus one per new declaration.

    A group's facet cites the group's events (exact by construction: groups are built
    from unread events only) and takes its polarity from the group. Its strength n is
    the geometric mean of how well its events back it (`evidence_support`) and its
    share of the new events read: a single view that is all the user did is weak, and
    so is a well-backed group among many (a handful of low ratings beside many high ones
    makes a weak avoid-facet).

    Cold start: "I like jazz and hiking" always seeds a facet in the user's own words,
    unless the words read as instructions to a model.
    """
    by_id = {e.event_id: e for e in activity.events}
    drafts: list[tuple[str, str, tuple[str, ...], float, Polarity, tuple[str, ...]]] = []
    for f in summary.facets:
        cited = [by_id[ev] for ev in f.evidence if ev in by_id and by_id[ev].id > read_through]
        if not cited:
            continue
        support = evidence_support(cited, f.polarity, rating_max)
        share = f.group.share if f.group is not None else f.strength
        tags = (*f.group.top_tags, *f.group.top_categories) if f.group else ()
        drafts.append((f.label, f.description, tags, math.sqrt(support * share), f.polarity,
                       tuple(e.event_id for e in cited)))
    for e in activity.events:
        if (e.type == "declared" and e.text and e.id > read_through
                and not reads_as_instructions(e.text)):
            words = " ".join(e.text.split())
            polarity: Polarity = "avoid" if e.value is not None and e.value < 0 else "like"
            drafts.append((_clip(words, LABEL_MAX), _clip(f"Declared: {words}", DESCRIPTION_MAX),
                           (), DECLARED_STRENGTH, polarity, (e.event_id,)))
    vectors = embedder.embed([facet_text(label, desc, tags) for label, desc, tags, *_ in drafts])
    return [
        NewFacet(label=label, description=desc, strength=strength, polarity=polarity,
                 evidence=evidence, embedding=tuple(vec))
        for (label, desc, _, strength, polarity, evidence), vec in zip(drafts, vectors,
                                                                        strict=True)
    ]


SUPPORT_FULL = 5.0  # this many agreeing events give full support
_AGREEING: dict[str, tuple[float, float]] = {  # event type -> (like, avoid) weight
    "purchase": (1.0, 0.0), "like": (1.0, 0.0), "dislike": (0.0, 1.0), "skip": (0.0, 0.5),
    "view": (0.5, 0.0), "click": (0.5, 0.0), "search": (0.5, 0.0), "post": (0.5, 0.0),
}


def evidence_support(events: Sequence[Event], polarity: Polarity, rating_max: float) -> float:
    """How strongly the cited events back a facet of this polarity, in [0, 1].

    Events that agree with the polarity count (a rating at or above 70% of the scale, a
    like or purchase for `like`; a rating at or below 50%, a dislike or skip for
    `avoid`; views, clicks, searches and posts half for `like`); events that contradict
    it count nothing. Full support at SUPPORT_FULL agreeing events.
    """
    total = 0.0
    for e in events:
        if e.type == "rating":
            if e.value is None or rating_max <= 0:
                continue
            share = e.value / rating_max
            agrees = share >= 0.7 if polarity == "like" else share <= 0.5
            total += 1.0 if agrees else 0.0
        else:
            like, avoid = _AGREEING.get(e.type, (0.0, 0.0))
            total += like if polarity == "like" else avoid
    return min(1.0, total / SUPPORT_FULL)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

