"""Scoring candidates from a profile: quotas, fusion, avoid penalties, MMR. No I/O.

Kept apart from the service so the arithmetic a trace records can be tested, and
re-derived by a reader, without a database or a vector store.

- Each like-facet asks for candidates in proportion to its decayed strength
  (`n_f = max(floor, ceil(pool * s_f / sum(s)))`), so a fading interest still
  contributes a few items while the dominant one fills most of the pool.
- Fusion takes the **max** over like-facets of `s_f * sim(f, item)`: an item is as
  good as its best reason, and being vaguely near many facets does not add up to a
  strong reason (a sum would favour bland items). The argmax facet is the item's
  `because`.
- Avoid-facets subtract `s_a * sim(a, item)` for every avoid-facet with similarity
  at or above `avoid_penalty_from`, and drop the item outright at `avoid_drop_from`
  when that avoid-facet's `s_a * sim` exceeds the item's best like (`max s_f * sim`).
- With the tenant's trained models but no learned ranker, the **fixed blend** scores
  each candidate (`blend`): for every trained source, its weight times the source's
  score divided by the best score that source gave in this list (so each lies in
  0..1 and a source's scale does not matter), plus the facet weight times the best
  like-facet's strength x similarity divided by the list's best, minus the avoid
  penalty (the largest avoid-facet strength x similarity). Weights (`BLEND_WEIGHTS`):
  co-occurrence and sequence 1.0, facets 1.0, transitions 0.8, content 0.5,
  popularity 0.3: collaborative signals find the next item best on real data, the
  facets carry the profile, and popularity only breaks ties.
- MMR picks the final list: `lambda * relevance - (1 - lambda) * max sim to the
  items already picked`, relevance being the fused score divided by the best
  candidate's, so both terms live on a comparable 0..1 scale.
- On hybrid lists the profile also shapes the list's mix (`calibrated_mmr`, after
  Steck, "Calibrated Recommendations", RecSys 2018): the like-facets' evidence items,
  each facet weighted by its share of the like strength, give the share of the
  profile's items carrying each of its 12 most common catalog tags (`tag_shares`);
  each greedy step also subtracts `calibration` x the summed KL divergence, tag by
  tag, between those shares and the shares of the list with the candidate added (mixed
  with 1% of the target so it stays finite), and the picks are then ordered by
  relevance: calibration decides what the list holds. Only the best
  `calibration_pool_per_k` x k candidates by score take part, so a list never reaches
  far down the ranking for its mix; a user whose facets are mostly animated films gets
  a list that is mostly animated films, and not only what co-occurs most.
- Before MMR, a candidate none of whose grounded reasons a person could follow (the
  lead event it would cite is not related to it: `reasons.RELATED_MIN`) keeps
  `unexplained_keep` (0.7) of its relevance, so between two close candidates the list
  takes the one it can explain; only the best `calibration_pool_per_k` x k take part,
  as with calibration, and the picks come back in discounted order (an unexplained item
  may follow a lower-scored one; the trace keeps each candidate's raw `score`). On the
  validation split this raised the share of faithful
  explanations without costing the facet lists accuracy (README, "Where ours stands").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.training.contract import MODEL_SOURCES
from service.training.features import COLUMN
from service.training.pseudo_facets import FACET_FLOOR, FACET_POOL

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RankingParams:
    """Defaults tuned for all-MiniLM-L6-v2 cosines; every run stores the values it used."""

    pool_per_k: int = 5  # candidates gathered per item asked for ...
    min_pool: int = FACET_POOL  # ... but never fewer than this (what training gathers) ...
    max_pool: int = 500  # ... nor more
    facet_floor: int = FACET_FLOOR  # every like-facet brings at least this many candidates
    mmr_lambda: float = 0.7
    # MiniLM puts an avoid-facet about 0.55-0.6 from items squarely on its topic and
    # 0.2-0.4 from unrelated ones (measured on the test catalog).
    avoid_penalty_from: float = 0.4
    avoid_drop_from: float = 0.5
    # Steck's lambda sits between 0 and 1; at 0.5 the two terms weigh alike.
    calibration: float = 0.5
    calibration_pool_per_k: int = 5
    # The share of its relevance an item keeps when none of its grounded reasons reads as
    # related to it (`reasons.RELATED_MIN`): 1 leaves the ranker's order alone. Judged on
    # the validation split (`eval --validation`), see the README.
    unexplained_keep: float = 0.7  # Settings.recommend_unexplained_keep

    def __post_init__(self) -> None:
        if not 0.0 < self.unexplained_keep <= 1.0:
            raise ValueError("unexplained_keep must be in (0, 1]: the share of its "
                             f"relevance an unexplained item keeps, got {self.unexplained_keep}")

    def pool(self, k: int) -> int:
        return min(max(self.pool_per_k * k, self.min_pool), self.max_pool)


def discount_unexplained(relevance: Vector, readable: Sequence[bool], keep: float) -> Vector:
    """Relevance (above 0, as MMR takes it) with each unreadable candidate's scaled by
    `keep`: the ranker's order among the readable, and among the unreadable, is kept."""
    factor = np.where(np.asarray(readable, dtype=np.bool_), 1.0, keep)
    scaled: Vector = relevance * factor
    return scaled


class LazyDiscount:
    """`discount_unexplained`'s relevance, each candidate's readability asked only when
    MMR needs it: a reason costs far more than an MMR step, and most of the pool never
    comes near the list.

    Until a candidate is asked about, its undiscounted relevance stands in as an upper
    bound (`values`); `mmr` asks about a candidate when it would pick it on its bound, and
    about the best ones until the list's top relevance is sure, so it picks exactly what
    it would with every candidate asked (each exact value is `relevance[i] * 1.0` or
    `relevance[i] * keep`, as `discount_unexplained` computes it, never above the bound)."""

    def __init__(self, relevance: Vector, readable: Callable[[int], bool], keep: float) -> None:
        self.values: Vector = np.array(relevance)  # a copy, its dtype kept
        self.settled = np.zeros(len(relevance), dtype=np.bool_) if keep < 1.0 else (
            np.ones(len(relevance), dtype=np.bool_))
        self._readable = readable
        self._keep = keep

    def settle(self, i: int) -> None:
        """Make candidate i's value exact."""
        if not self.settled[i]:
            self.values[i] = self.values[i] * (1.0 if self._readable(i) else self._keep)
            self.settled[i] = True

    def top(self) -> float:
        """The largest exact value, asking about candidates best bound first only while
        one of them could still be above every value already exact."""
        while not self.settled.all():
            bounds = np.where(self.settled, -np.inf, self.values)
            i = int(bounds.argmax())
            known = self.values[self.settled]
            if len(known) and float(bounds[i]) <= float(known.max()):
                break
            self.settle(i)
        return float(self.values.max())


def _lazy(relevance: Vector | LazyDiscount) -> LazyDiscount:
    if isinstance(relevance, LazyDiscount):
        return relevance
    return LazyDiscount(relevance, lambda i: True, 1.0)


def normalized(vectors: Matrix) -> Matrix:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Matrix = (vectors / norms).astype(np.float32)
    return result


@dataclass(frozen=True)
class Fusion:
    """Per-candidate results of fusing like-facets and applying avoid-facets."""

    base: Vector  # max over like-facets of strength x similarity (0 without likes)
    best: npt.NDArray[np.int64]  # index of that like-facet (-1 without likes)
    penalty: Vector  # sum over avoid-facets at or above the penalty threshold
    dropped: npt.NDArray[np.bool_]  # some avoid-facet at or above the drop threshold
    score: Vector  # base - penalty


def fuse(
    like_strengths: Sequence[float], like_sims: Matrix,
    avoid_strengths: Sequence[float], avoid_sims: Matrix, params: RankingParams,
) -> Fusion:
    """`*_sims` are facets x candidates cosine similarities."""
    n = like_sims.shape[1] if like_sims.ndim == 2 else avoid_sims.shape[1]
    if len(like_strengths):
        contribution = np.asarray(like_strengths, dtype=np.float64)[:, None] * like_sims
        best = contribution.argmax(axis=0).astype(np.int64)
        base = contribution.max(axis=0).astype(np.float64)
    else:
        best = np.full(n, -1, dtype=np.int64)
        base = np.zeros(n, dtype=np.float64)
    if len(avoid_strengths):
        strengths = np.asarray(avoid_strengths, dtype=np.float64)[:, None]
        over = avoid_sims >= params.avoid_penalty_from
        penalty = (strengths * avoid_sims * over).sum(axis=0).astype(np.float64)
        # Squarely on an avoid-facet, and that dislike outweighs the item's best like
        # (strength x similarity): a few low ratings of animated films do not drop every
        # animated film for someone who loves most of them.
        avoided = (strengths * avoid_sims * (avoid_sims >= params.avoid_drop_from)).max(axis=0)
        dropped = np.asarray((avoid_sims >= params.avoid_drop_from).any(axis=0)
                             & (avoided > base), dtype=np.bool_)
    else:
        penalty = np.zeros(n, dtype=np.float64)
        dropped = np.zeros(n, dtype=np.bool_)
    return Fusion(base=base, best=best, penalty=penalty, dropped=dropped, score=base - penalty)


class ListCost(Protocol):
    """A cost MMR subtracts from each candidate's objective, given what it picked so far."""

    def cost(self) -> Vector: ...  # one per candidate, were it added next

    def picked(self, i: int) -> None: ...


def mmr(relevance: Vector | LazyDiscount, vectors: Matrix, k: int, lam: float,
        extra: ListCost | None = None) -> list[tuple[int, float]]:
    """Indices picked by maximal marginal relevance, in order, with their objective
    (minus `extra`'s cost, when given).

    `vectors` must be unit length. Ties go to the lower index, so callers order
    candidates deterministically first. With a `LazyDiscount`, a candidate's value is
    made exact before it is picked: the others' bounds are at least their exact values,
    so the pick (ties to the lower index too) is the one exact values would give.
    """
    lazy = _lazy(relevance)
    count = len(lazy.values)
    if count == 0 or k < 1:
        return []
    top = lazy.top()
    # Similarity to the closest picked item; a negative similarity earns no bonus.
    redundancy = np.zeros(count, dtype=np.float64)
    available = np.ones(count, dtype=np.bool_)
    picked: list[tuple[int, float]] = []
    for _ in range(min(k, count)):
        cost = extra.cost() if extra is not None else None
        while True:
            values = lazy.values
            rel = values / top if top > 0 else values
            objective = lam * rel - (1.0 - lam) * redundancy
            if cost is not None:
                objective = objective - cost
            objective[~available] = -np.inf
            i = int(objective.argmax())
            if lazy.settled[i]:
                break
            lazy.settle(i)
        picked.append((i, float(objective[i])))
        available[i] = False
        redundancy = np.maximum(redundancy, vectors @ vectors[i])
        if extra is not None:
            extra.picked(i)
    return picked


BLEND_WEIGHTS: dict[str, float] = {
    "cooccurrence": 1.0, "sequence": 1.0, "transition": 0.8, "content": 0.5, "popular": 0.3,
    "facet": 1.0,
}


def _scaled(column: Vector) -> Vector:
    top = float(column.max()) if len(column) else 0.0
    return column / top if top > 0 else np.zeros_like(column)


def blend(features: npt.NDArray[np.float32],
          weights: dict[str, float] | None = None) -> Vector:
    """The fixed blend of `features.py` rows (see the module's notes), one score per row."""
    weights = weights or BLEND_WEIGHTS
    rows = features.astype(np.float64)
    score = np.zeros(len(rows), dtype=np.float64)
    for source in MODEL_SOURCES:
        score += weights.get(source, 0.0) * _scaled(np.clip(rows[:, COLUMN[f"score_{source}"]],
                                                            0.0, None))
    score += weights.get("facet", 0.0) * _scaled(rows[:, COLUMN["facet_best"]])
    result: Vector = score - rows[:, COLUMN["avoid_penalty"]]
    return result


CALIBRATION_MIX = 0.01  # of the target mixed into the list's distribution (Steck's alpha)
SHARE_EPSILON = 1e-9  # a target share closer than this to 1 counts as 1


CALIBRATION_TAGS = 12  # the profile's most common tags, over which lists are calibrated


def tag_shares(tag_sets: Sequence[Sequence[str]], weights: Sequence[float],
               top: int = CALIBRATION_TAGS) -> dict[str, float]:
    """For the `top` tags the weighted items carry most: the weighted share of items
    carrying each (items without tags count for nothing). Empty without tagged items."""
    counts: dict[str, float] = {}
    mass = 0.0
    for tags, weight in zip(tag_sets, weights, strict=True):
        if not tags or weight <= 0:
            continue
        mass += weight
        for t in set(tags):
            counts[t] = counts.get(t, 0.0) + weight
    if mass <= 0:
        return {}
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {t: min(c / mass, 1.0) for t, c in sorted(best)}


class _Calibration:
    """`calibration` x the per-tag Bernoulli KL divergence of the target shares from
    the list's, were each candidate added (see `calibrated_mmr`)."""

    def __init__(self, tag_sets: Sequence[Sequence[str]], target: dict[str, float],
                 weight: float) -> None:
        column = {t: n for n, t in enumerate(target)}
        # A share within rounding of 1 is 1: with a list wholly tagged, 1 - q would round to
        # 0 and its log make the cost infinite (a share summed from weights can land on
        # 0.9999999999999999).
        shares = np.array(list(target.values()), dtype=np.float64)
        self.p = np.where(shares > 1.0 - SHARE_EPSILON, 1.0, shares)[None, :]
        self.has = np.zeros((len(tag_sets), len(column)), dtype=np.float64)
        for i, ts in enumerate(tag_sets):
            for t in ts:
                if t in column:
                    self.has[i, column[t]] = 1.0
        self.tagged = np.array([bool(ts) for ts in tag_sets], dtype=np.float64)
        self.weight = weight
        self.list_has = np.zeros(len(column), dtype=np.float64)
        self.list_tagged = 0.0
        # Per tag, KL = p log p - p log q + (1-p) log(1-p) - (1-p) log(1-q); the terms
        # that do not involve q are a constant, and a term whose weight (p, or 1-p) is 0
        # is 0 (0 log 0 = 0): only the tags with p > 0 (resp. p < 1) take part in each.
        target_p = self.p[0]
        self._yes = target_p > 0
        self._no = target_p < 1
        self._p_yes = target_p[self._yes]
        self._p_no = 1.0 - target_p[self._no]
        self._constant = float(self._p_yes @ np.log(self._p_yes)
                               + self._p_no @ np.log(self._p_no))

    def cost(self) -> Vector:
        n_tagged = np.maximum(self.list_tagged + self.tagged, 1.0)[:, None]
        q = ((1.0 - CALIBRATION_MIX) * (self.list_has[None, :] + self.has) / n_tagged
             + CALIBRATION_MIX * self.p)
        divergence: Vector = (self._constant - np.log(q[:, self._yes]) @ self._p_yes
                              - np.log1p(-q[:, self._no]) @ self._p_no)
        return self.weight * divergence

    def picked(self, i: int) -> None:
        self.list_has += self.has[i]
        self.list_tagged += self.tagged[i]


def calibrated_mmr(relevance: Vector | LazyDiscount, vectors: Matrix,
                   tag_sets: Sequence[Sequence[str]], target: dict[str, float], k: int,
                   lam: float, calibration: float) -> list[tuple[int, float]]:
    """MMR (see `mmr`) with a calibration term; without a target, plain MMR.

    `target[t]` is the share of the profile's items carrying tag t; `tag_sets[i]` are
    candidate i's tags. Each step picks the candidate maximising
    `lam * rel - (1 - lam) * redundancy - calibration * D`, where D sums, over the
    target's tags, the KL divergence between the target share and the share of the
    list (with the candidate added) carrying the tag, as two Bernoulli distributions,
    the list's mixed with CALIBRATION_MIX of the target so it stays finite. Untagged
    items leave the shares as they are. Ties go to the lower index. The picks come back
    most relevant first (with their objective when picked).
    """
    lazy = _lazy(relevance)
    if not target or calibration <= 0 or len(lazy.values) == 0:
        return mmr(lazy, vectors, k, lam)
    picked = mmr(lazy, vectors, k, lam, _Calibration(tag_sets, target, calibration))
    # Calibration decides what the list holds, relevance its order: the greedy order
    # would put first whatever covers the most of the target, not the best item. (Every
    # pick's value is exact.)
    return sorted(picked, key=lambda pick: (-float(lazy.values[pick[0]]), pick[0]))
