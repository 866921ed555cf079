"""Which like-facets a hybrid pick's facet reason may name: those whose evidence items'
tags the item carries enough of, rather than merely the nearest vector
(`reasons.best_reason` names the one whose evidence reads closest to the item)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.ingest.evidence import EvidenceEvent
from service.recommend.candidates import ActiveFacet, CatalogRow
from service.recommend.ranking import tag_shares

# A facet reason needs the item to carry at least this share of the facet's tag mass
# (its evidence items' most common tags, category aside), when both have tags.
FACET_TAG_MATCH = 0.25


@dataclass
class ProfileTags:
    """The like-facets' tags, from their evidence items (`ranking.tag_shares`)."""

    target: dict[str, float]  # all like-facets, each weighing its share of the strength
    per_facet: list[dict[str, float]]  # each like-facet's own, its items alike

    def __post_init__(self) -> None:
        # Each facet's shares without categories, and their mass: `match` runs for every
        # facet of every pick, so they are worked out once.
        self._own = [{t: v for t, v in shares.items() if not t.startswith("category:")}
                     for shares in self.per_facet]
        self._mass = [sum(own.values()) for own in self._own]

    def match(self, n: int, tags: Sequence[str]) -> float | None:
        """The share of facet n's tag mass (category aside) that `tags` carry; None when
        the facet or the item has no tags to compare."""
        own, mass = self._own[n], self._mass[n]
        if mass <= 0 or not tags:
            return None
        return sum(own.get(t, 0.0) for t in set(tags)) / mass


def facet_tag_sets(facet: ActiveFacet, evidence: dict[str, EvidenceEvent],
                   rows: dict[str, CatalogRow]) -> tuple[tuple[str, ...], ...]:
    """The tags of each of the facet's evidence items that has any, in evidence order.
    `rows` are the catalog rows of the evidence items (`evidence_with_items`)."""
    return tuple(rows[item].tags for e in facet.evidence
                 if (ev := evidence.get(e)) is not None and (item := ev.item_id)
                 and item in rows and rows[item].tags)


def facet_shares(tag_sets: Sequence[tuple[str, ...]]) -> dict[str, float]:
    """A facet's own tag shares, its items alike (`ProfileTags.per_facet`)."""
    return tag_shares(tag_sets, [1.0] * len(tag_sets))


def profile_tags(likes: Sequence[ActiveFacet], tag_sets: Sequence[Sequence[tuple[str, ...]]],
                 per_facet: list[dict[str, float]]) -> ProfileTags:
    """The profile's tags from each like-facet's `facet_tag_sets` and `facet_shares` (in
    `likes`' order): the target weighs each facet's items by its share of the strength."""
    total = sum(max(f.strength, 0.0) for f in likes)
    every: list[tuple[str, ...]] = []
    weights: list[float] = []
    for facet, tagged in zip(likes, tag_sets, strict=True):
        for tags in tagged:
            every.append(tags)
            weights.append(max(facet.strength, 0.0) / total / len(tagged))
    return ProfileTags(tag_shares(every, weights) if total > 0 else {}, per_facet)


def reason_facets(tags: Sequence[str], likes: Sequence[ActiveFacet], fused_best: int,
                  profile: ProfileTags) -> list[int]:
    """The like-facets an item's facet reason may name: those whose tags the item carries
    enough of (`FACET_TAG_MATCH`), strongest by strength x match first; none when tags
    rule every facet out; the fused best (strength x similarity) alone when there are no
    tags to go by."""
    scored: list[tuple[float, int]] = []
    compared = False
    for n, facet in enumerate(likes):
        match = profile.match(n, tags)
        if match is None:
            continue
        compared = True
        score = facet.strength * match
        if match >= FACET_TAG_MATCH and score > 0:
            scored.append((-score, n))
    if not compared:
        return [fused_best] if fused_best >= 0 else []
    return [n for _, n in sorted(scored)]
