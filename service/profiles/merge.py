"""The deterministic merge of new facets into a profile (DESIGN.md §4). No LLM, no I/O.

Strength decays at read time: a facet stores `strength` as of `strength_at`, and
`decayed_strength` halves it every half-life of its horizon. A refresh at time t
matches each new facet to at most one prior facet (cosine >= tau, same polarity),
reinforces matches with saturation, creates the rest as short-term, lowers the
short-term facets it passed over (displacement), promotes facets reinforced often
enough over a long enough span, and archives those that have faded below the floor.
User edits win: pinned facets never decay and suppressed ones are never brought back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from service.core.schemas import Horizon, Polarity


@dataclass(frozen=True)
class DecayRules:
    half_life_short: timedelta = timedelta(days=7)
    half_life_long: timedelta = timedelta(days=90)
    match_threshold: float = 0.8  # tau
    reinforcement: float = 0.5  # eta
    promote_after: int = 3  # R reinforcements ...
    promote_span: timedelta = timedelta(days=14)  # ... spanning at least D
    archive_below: float = 0.05
    max_evidence: int = 20  # newest kept when a union grows past it
    # An unmatched short-term like loses this share of the refresh's strongest like
    # (0: unmatched facets only decay with time).
    displacement: float = 0.5


@dataclass(frozen=True)
class NewFacet:
    """A facet as the summarizer wrote it, with its embedding."""

    label: str
    description: str
    strength: float
    polarity: Polarity
    evidence: tuple[str, ...]
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class ProfileFacet:
    facet_id: str
    label: str
    description: str
    strength: float  # as of strength_at
    strength_at: datetime
    horizon: Horizon
    polarity: Polarity
    evidence: tuple[str, ...]
    embedding: tuple[float, ...]
    first_seen: datetime
    last_reinforced: datetime
    reinforcements: int = 0
    pinned: bool = False
    suppressed: bool = False
    archived: bool = False


def half_life(horizon: Horizon, rules: DecayRules) -> timedelta:
    return rules.half_life_long if horizon == "long" else rules.half_life_short


def decayed_strength(facet: ProfileFacet, at: datetime, rules: DecayRules) -> float:
    """s(t) = s0 * 2^(-(t - t0) / H); pinned facets keep s0; never rises before t0."""
    return decayed(facet.strength, facet.strength_at, facet.horizon, facet.pinned, at, rules)


def decayed(strength: float, strength_at: datetime, horizon: Horizon, pinned: bool,
            at: datetime, rules: DecayRules) -> float:
    """`decayed_strength` from a facet's stored fields (reads that skip building one)."""
    if pinned:
        return strength
    elapsed = max((at - strength_at).total_seconds(), 0.0)
    factor: float = 2.0 ** (-elapsed / half_life(horizon, rules).total_seconds())
    return strength * factor


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _new_key(f: NewFacet) -> tuple[object, ...]:
    return (f.label, f.description, f.strength, f.polarity, f.evidence, f.embedding)


def merge_profile(
    prior: Sequence[ProfileFacet],
    new: Sequence[NewFacet],
    at: datetime,
    rules: DecayRules,
    new_id: Callable[[NewFacet], str],
) -> list[ProfileFacet]:
    """The profile after a refresh at `at`; the result does not depend on input order."""
    prior = sorted(prior, key=lambda f: f.facet_id)
    candidates = sorted(new, key=_new_key)
    suppressed = [p for p in prior if p.suppressed]
    matchable = [p for p in prior if not p.suppressed and not p.archived]

    # A new facet close to something the user suppressed is dropped, never re-created.
    candidates = [
        n for n in candidates
        if not any(p.polarity == n.polarity and cosine(p.embedding, n.embedding)
                   >= rules.match_threshold for p in suppressed)
    ]

    # One-to-one matching, most similar pairs first (ties by id and canonical order).
    pairs = sorted(
        (
            (-cosine(p.embedding, n.embedding), p.facet_id, i, p, n)
            for p in matchable
            for i, n in enumerate(candidates)
            if p.polarity == n.polarity
        ),
        key=lambda pair: pair[:3],
    )
    matched: dict[str, NewFacet] = {}
    used: set[int] = set()
    for negative_similarity, facet_id, i, _, n in pairs:
        if -negative_similarity < rules.match_threshold:
            break
        if facet_id in matched or i in used:
            continue
        matched[facet_id] = n
        used.add(i)

    # Displacement: the strongest like this refresh backs (new or reinforced) takes its
    # share from the short-term likes it passed over. A prior that one of the refresh's
    # facets is close to was not passed over (one-to-one matching may have paired that
    # facet with a near-duplicate), so it only decays.
    likes = [n for n in candidates if n.polarity == "like"]
    strongest = max((n.strength for n in likes), default=0.0)
    merged: list[ProfileFacet] = []
    for p in prior:
        if p.facet_id in matched:
            merged.append(_reinforce(p, matched[p.facet_id], at, rules))
        elif (p.polarity == "like" and strongest > 0 and not p.archived
              and not any(cosine(p.embedding, n.embedding) >= rules.match_threshold
                          for n in likes)):
            merged.append(_displace(p, strongest, at, rules))
        else:
            merged.append(p)
    for i, n in enumerate(candidates):
        if i in used:
            continue
        strength = min(max(rules.reinforcement * n.strength, 0.0), 1.0)
        merged.append(ProfileFacet(
            facet_id=new_id(n), label=n.label, description=n.description, strength=strength,
            strength_at=at, horizon="short", polarity=n.polarity,
            evidence=n.evidence[-rules.max_evidence:],
            embedding=n.embedding, first_seen=at, last_reinforced=at,
        ))
    return [_archive_if_faded(f, at, rules) for f in merged]


def _reinforce(p: ProfileFacet, n: NewFacet, at: datetime, rules: DecayRules) -> ProfileFacet:
    current = decayed_strength(p, at, rules)
    gain = min(max(rules.reinforcement * n.strength, 0.0), 1.0)
    strength = min(current + (1.0 - current) * gain, 1.0)
    reinforcements = p.reinforcements + 1
    horizon: Horizon = p.horizon
    if (horizon == "short" and reinforcements >= rules.promote_after
            and at - p.first_seen >= rules.promote_span):
        horizon = "long"
    evidence = tuple(dict.fromkeys((*p.evidence, *n.evidence)))[-rules.max_evidence:]
    return replace(p, strength=strength, strength_at=at, horizon=horizon, evidence=evidence,
                   last_reinforced=at, reinforcements=reinforcements, archived=False)


def _displace(p: ProfileFacet, n: float, at: datetime, rules: DecayRules) -> ProfileFacet:
    """A short-term like the new events passed over, while they backed another like with
    strength n, loses `rules.displacement` of n: s <- s(t)·(1 - d·n).

    Time decay alone reads a burst on a new topic as no news about the old one, so a
    finished streak lingers for half-lives while the user is busy elsewhere. Long-term
    facets (reinforced over weeks) and pinned ones are kept: one refresh's activity
    elsewhere says little about a lasting taste. Avoid-facets only decay: a new dislike
    says nothing against an old one.
    """
    if p.pinned or p.suppressed or p.horizon != "short" or rules.displacement <= 0:
        return p
    loss = min(max(rules.displacement * n, 0.0), 1.0)
    return replace(p, strength=decayed_strength(p, at, rules) * (1.0 - loss), strength_at=at)


def _archive_if_faded(f: ProfileFacet, at: datetime, rules: DecayRules) -> ProfileFacet:
    if f.pinned or f.archived or f.suppressed:
        return f
    if decayed_strength(f, at, rules) < rules.archive_below:
        return replace(f, archived=True)
    return f
