"""Explanation faithfulness: does the evidence a recommendation cites hold up?

Every profile-based item of `GET /v1/users/{id}/recommendations` carries a
`because` whose `evidence` lists the user's own events behind it, the item the
service found closest first; the template explanation names that one first
("Because you liked Alien and ..."). An explained item is **faithful** when

(a) every cited event is one the replay really sent for that user, about the same
    item (`evidence_exists`: nothing invented, nothing borrowed from another user), and
(b) the lead cited item, the one the explanation names first, is related to the
    recommended item: MiniLM cosine similarity of the two items' texts
    (`ItemInfo.text`) >= `DEFAULT_RELATED_THRESHOLD` (`evidence_related`).

An explained item that cites nothing, or only events without an item, fails (b).
Items without a `because` are the popular fallback: they cite nothing, so they are
never faithful, and they are counted apart.

Reported, over all recommended items (`recommended_items`, every test user's top K):
`faithfulness` (faithful items), `popular_fallback_share`, `evidence_exists` and
`evidence_related` (each condition on its own), so faithfulness can be read against
its ceiling 1 - popular_fallback_share; and `faithfulness_explained`, faithful items
over explained ones, which says how far the reasons that are given hold up.

Why the lead item and not "any cited item": the service shows up to five, and the
best of five random movies clears the threshold below about two times in three, so
"any" would be satisfied by chance. The lead item is still generous: among an item's
grounded reasons (every like-facet that backs it, each model source that does), the
service gives the one whose lead cited item is most related to the recommended item,
on its own vectors of the items (`service.recommend.reasons`), and a facet's lead is
the closest of its evidence; so the lead clears the threshold more easily than one
random pair would (21%, below, is a floor on chance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from evals.tracking import TextEmbedder, unit_vector

# Calibrated with all-MiniLM-L6-v2 on ml-latest-small item texts (title, genres, tags):
# 3,000 movies sampled with seed 0, 20,000 random pairs and 5,000 pairs with the same
# genre set. Cosine percentiles (5/25/50/75/95):
#   random pairs              0.29 / 0.37 / 0.43 / 0.49 / 0.57   (21% >= 0.50)
#   no genre in common        0.27 / 0.35 / 0.40 / 0.45 / 0.52   ( 9% >= 0.50)
#   at least one genre shared 0.33 / 0.41 / 0.47 / 0.53 / 0.60   (36% >= 0.50)
#   same genre set            0.42 / 0.50 / 0.56 / 0.61 / 0.68   (73% >= 0.50)
# The texts share their "Genres: ... Tags: ..." scaffolding, so even random pairs sit
# near 0.43. At 0.50 a cited movie must be closer than four random pairs in five, while
# three same-genre pairs in four pass; one random citation passes 21% of the time. The
# lead item is the closest of a facet's evidence, so chance for it is higher than that.
DEFAULT_RELATED_THRESHOLD = 0.50


@dataclass(frozen=True)
class Cited:
    """One evidence event as the recommendation response cites it."""

    event_id: str
    item_id: str | None


@dataclass(frozen=True)
class Shown:
    """One recommended item; `because` None means the popular fallback (no reason).
    `kind` is the reason's kind as the response names it (facet, co_occurrence, ...)."""

    item_id: str
    because: tuple[Cited, ...] | None
    kind: str | None = None


@dataclass(frozen=True)
class ShownList:
    """A user's top K as the API returned it, and the events the replay sent
    for that user (event id -> item id)."""

    user: str
    items: Sequence[Shown]
    sent: Mapping[str, str]


@dataclass(frozen=True)
class Faithfulness:
    recommended: int
    popular: int  # no `because`
    explained: int
    evidence_exists: int
    evidence_related: int
    faithful: int
    threshold: float
    # explained items and faithful ones, by the reason's kind (when the lists name it)
    by_kind: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The keys `metrics.json` reports; shares over nothing are left out, not zero.
        Per reason kind: `reason_<kind>`, its share of the recommended items, and
        `faithful_<kind>`, the faithful share of those items."""
        out = {"recommended_items": float(self.recommended)}
        if self.recommended:
            n = self.recommended
            out.update(faithfulness=self.faithful / n, popular_fallback_share=self.popular / n,
                       evidence_exists=self.evidence_exists / n,
                       evidence_related=self.evidence_related / n)
            for kind, (count, faithful) in sorted(self.by_kind.items()):
                out[f"reason_{kind}"] = count / n
                out[f"faithful_{kind}"] = faithful / count
        if self.explained:
            out["faithfulness_explained"] = self.faithful / self.explained
        return out


def _lead_item(cited: Sequence[Cited]) -> str | None:
    return next((c.item_id for c in cited if c.item_id is not None), None)


def score_explanations(lists: Iterable[ShownList], item_text: Mapping[str, str],
                       embedder: TextEmbedder,
                       threshold: float = DEFAULT_RELATED_THRESHOLD) -> Faithfulness:
    """Count faithful explained items over every user's list (definitions above).

    `item_text` maps item ids to the text the judge embeds; an item missing from it
    cannot be judged related. Each distinct text is embedded once.
    """
    lists = list(lists)
    pairs = [(shown.item_id, _lead_item(shown.because)) for lst in lists for shown in lst.items
             if shown.because]
    texts = list(dict.fromkeys(item_text[i] for pair in pairs for i in pair
                               if i is not None and i in item_text))
    vectors = dict(zip(texts, (unit_vector(v) for v in embedder.embed(texts)), strict=True)) \
        if texts else {}

    def similarity(a: str, b: str | None) -> float | None:
        if b is None or a not in item_text or b not in item_text:
            return None
        return sum(x * y for x, y in zip(vectors[item_text[a]], vectors[item_text[b]],
                                         strict=True))

    recommended = popular = explained = exists = related = faithful = 0
    by_kind: dict[str, tuple[int, int]] = {}
    for lst in lists:
        for shown in lst.items:
            recommended += 1
            if shown.because is None:
                popular += 1
                continue
            explained += 1
            cited = shown.because
            ok_exists = bool(cited) and all(
                c.event_id in lst.sent and lst.sent[c.event_id] == c.item_id for c in cited)
            sim = similarity(shown.item_id, _lead_item(cited))
            # A hair of slack so "at the threshold" survives float rounding in the embedder.
            ok_related = sim is not None and sim >= threshold - 1e-9
            exists += ok_exists
            related += ok_related
            faithful += ok_exists and ok_related
            if shown.kind is not None:
                count, good = by_kind.get(shown.kind, (0, 0))
                by_kind[shown.kind] = (count + 1, good + (ok_exists and ok_related))
    return Faithfulness(recommended=recommended, popular=popular, explained=explained,
                        evidence_exists=exists, evidence_related=related, faithful=faithful,
                        threshold=threshold, by_kind=by_kind)
