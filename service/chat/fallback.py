"""The deterministic answer: the decline phrase and what the trace does say, in words
built from the trace alone (the asked or named item's reason and evidence, else the
strongest interests behind the list)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from service.chat.context import TraceContext, as_evidence, facet_evidence
from service.chat.schemas import DECLINE
from service.ingest.evidence import EvidenceEvent as Evidence
from service.recommend.explain import VERBS, title_variants
from service.recommend.schemas import ReasonKind, RecommendedItem

# How the deterministic answer says an event-based reason to the person.
EVENT_REASONS: dict[ReasonKind, str] = {
    "facet": "of your interests",
    "co_occurrence": "people who liked what you liked also liked it",
    "transition": "people who did what you did went on to it next",
    "sequence": "it often comes next after what you did recently",
    "content": "it is much like something you liked",
}


def _named_item(items: Sequence[RecommendedItem], question: str) -> RecommendedItem | None:
    """The list's item whose title the question names (the longest such title wins)."""
    best: tuple[int, RecommendedItem] | None = None
    for item in items:
        for variant in title_variants(item.title):
            pattern = r"(?<!\w)" + re.escape(variant) + r"(?!\w)"
            if re.search(pattern, question, re.IGNORECASE) and (
                    best is None or len(variant) > best[0]):
                best = (len(variant), item)
    return best[1] if best else None


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _seen_when(evidence: Sequence[Evidence]) -> str:
    """"you liked “Alien” [e1] and “Dune” [e2]": one verb when the actions agree."""
    def what(e: Evidence) -> str:
        name = e.title or " ".join((e.text or e.item_id or "").split())[:60]
        return f"“{name}” [{e.event_id}]"

    verbs = [VERBS.get(e.type, e.type) for e in evidence]
    if len(set(verbs)) == 1:
        return f"you {verbs[0]} " + _join([what(e) for e in evidence])
    return _join([f"you {v} {what(e)}" for v, e in zip(verbs, evidence, strict=True)])


def fallback_answer(ctx: TraceContext, question: str) -> tuple[str, list[str]]:
    """The decline phrase and what the trace does say: the asked (or named) item's
    facet and evidence, else the strongest interests behind the list."""
    item = ctx.asked or _named_item(ctx.items, question)
    if item is not None and item.because is not None:
        b = item.because
        shown = [as_evidence(e) for e in b.evidence[:2]]
        if b.kind == "facet":
            reason = (f"“{item.title}” was recommended for your interest in {b.label} "
                      f"(strength {b.strength or 0:.2f})")
        else:
            reason = f"“{item.title}” was recommended because {EVENT_REASONS[b.kind]}"
        if shown:
            reason += ", seen when " + _seen_when(shown)
        return f"{DECLINE} What it does show: {reason}.", [e.event_id for e in shown]
    if item is not None:
        return (f"{DECLINE} What it does show: “{item.title}” was not chosen from your own "
                f"activity. {item.explanation}"), []
    likes = [f for f in ctx.facets if f.polarity == "like"][:2]
    reasoned = [i for i in ctx.items if i.because is not None][:2]
    if not likes and reasoned:  # a hybrid list from the person's events alone
        parts, cited = [], []
        for i in reasoned:
            assert i.because is not None
            shown = [as_evidence(e) for e in i.because.evidence[:1]]
            cited += [e.event_id for e in shown]
            parts.append(f"“{i.title}” because {EVENT_REASONS[i.because.kind]}, seen when "
                         + _seen_when(shown))
        return (f"{DECLINE} What it does show: {_join(parts)}."), cited
    if not likes:
        return (f"{DECLINE} What it does show: this list holds popular and catalog items, "
                "not items chosen from your own activity."), []
    parts, cited = [], []
    for f in likes:
        shown = facet_evidence(ctx, f, 2)
        cited += [e.event_id for e in shown]
        parts.append(f"{f.label} (strength {f.strength:.2f}"
                     + (", seen when " + _seen_when(shown) if shown else "")
                     + ")")
    return (f"{DECLINE} What it does show: this list was built from your interests in "
            f"{_join(parts)}."), cited
