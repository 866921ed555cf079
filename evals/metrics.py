"""Ranking and beyond-accuracy metrics, one user (or one run) at a time.

Conventions, so numbers compare with papers and with `ir_measures`/trec_eval:

- Relevance is binary: an item is relevant iff it is among the user's targets.
  `ranked` must hold distinct ids; only its first `k` entries count.
- HR@K: 1 if any target is in the top K, else 0 (trec_eval's Success@K).
- Recall@K: relevant items in the top K / number of targets (not min(|targets|, K)).
- NDCG@K: DCG = sum of 1 / log2(rank + 1) over relevant ranks 1..K; the ideal DCG
  places min(|targets|, K) relevant items first.
- MRR@K: 1 / rank of the first relevant item within the top K, else 0.
- No MAP.
- Catalog coverage: distinct items recommended to anyone / catalog size.
- Intra-list diversity: mean over pairs of a list's items of 1 - cosine similarity of
  the item vectors supplied; items without a vector (or with a zero vector) are left
  out, and a list with fewer than two such items has no diversity (None).
- Novelty: mean over a list of -log2 of each item's popularity share in training,
  add-one smoothed over the catalog, share = (count + 1) / (interactions + catalog
  size), so an item nobody touched is maximally novel rather than infinitely so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from evals.types import Interaction


def _top_k(ranked: Sequence[str], k: int, targets: Collection[str]) -> Sequence[str]:
    if k < 1:
        raise ValueError("k must be at least 1")
    if not targets:
        raise ValueError("a user without targets cannot be scored")
    top = ranked[:k]
    if len(set(top)) != len(top):
        raise ValueError("ranked list repeats an item")
    return top


def hit_rate(ranked: Sequence[str], targets: Collection[str], k: int) -> float:
    return 1.0 if any(item in targets for item in _top_k(ranked, k, targets)) else 0.0


def recall(ranked: Sequence[str], targets: Collection[str], k: int) -> float:
    hits = sum(1 for item in _top_k(ranked, k, targets) if item in targets)
    return hits / len(set(targets))


def ndcg(ranked: Sequence[str], targets: Collection[str], k: int) -> float:
    top = _top_k(ranked, k, targets)
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(top) if item in targets)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(set(targets)), k)))
    return dcg / ideal


def mrr(ranked: Sequence[str], targets: Collection[str], k: int) -> float:
    for rank, item in enumerate(_top_k(ranked, k, targets), start=1):
        if item in targets:
            return 1.0 / rank
    return 0.0


def catalog_coverage(recommendations: Iterable[Sequence[str]], catalog_size: int) -> float:
    if catalog_size < 1:
        raise ValueError("catalog_size must be at least 1")
    distinct: set[str] = set()
    for items in recommendations:
        distinct.update(items)
    return len(distinct) / catalog_size


def intra_list_diversity(items: Sequence[str], vectors: Mapping[str, Any]) -> float | None:
    """Mean pairwise cosine distance; None when fewer than two items have a vector."""
    rows = []
    for item in items:
        if item in vectors:
            row = np.asarray(vectors[item], dtype=float).ravel()
            norm = float(np.linalg.norm(row))
            if norm > 0:
                rows.append(row / norm)
    if len(rows) < 2:
        return None
    unit = np.vstack(rows)
    similarity = unit @ unit.T
    upper = np.triu_indices(len(rows), k=1)
    return float(np.mean(1.0 - similarity[upper]))


def popularity_shares(train: Iterable[Interaction], catalog: Iterable[str]) -> dict[str, float]:
    """Add-one smoothed share of training interactions per catalog item."""
    counts = Counter(i.item for i in train)
    items = set(catalog) | set(counts)
    total = sum(counts.values()) + len(items)
    return {item: (counts[item] + 1) / total for item in items}


def novelty(items: Sequence[str], shares: Mapping[str, float]) -> float | None:
    """Mean self-information in bits; None for an empty list."""
    if not items:
        return None
    return sum(-math.log2(shares[item]) for item in items) / len(items)
