"""Evaluation protocols: how a time-ordered `Dataset` becomes a `Split`.

An interaction is positive when it has no rating (an implicit event) or its rating is
at least `positive_threshold`. Only positives are ever targets; negatives stay in the
training data, because our profiles learn "avoid" facets from them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable

from evals.types import Dataset, Interaction, Split

LEAVE_LAST_OUT = "leave-last-out"
GLOBAL_TIME = "global-time"
VALIDATION = "-validation"  # suffix of a split's protocol made by `validation_split`


def is_positive(interaction: Interaction, positive_threshold: float) -> bool:
    return interaction.rating is None or interaction.rating >= positive_threshold


def leave_last_out(dataset: Dataset, positive_threshold: float = 3.5) -> Split:
    """Hold out each user's last interaction (by `(ts, seq)`) as the single target.

    A user is a test user only if they have at least 2 interactions and the last one is
    positive and about an item they had not consumed before (a consumed item is
    excluded from their recommendations, so it could never be hit). Every other user
    keeps all their interactions in training. For test users all earlier interactions,
    negatives included, are training. Other users' later interactions stay in
    training too: this is the usual leave-last-out leak of future popularity, which
    `global_time_split` avoids.
    """
    train: list[Interaction] = []
    targets: dict[str, list[str]] = {}
    cutoff: dict[str, int] = {}
    for user, events in _by_user(dataset.interactions).items():
        *earlier, last = events
        consumed = {e.item for e in earlier}
        if earlier and is_positive(last, positive_threshold) and last.item not in consumed:
            targets[user] = [last.item]
            cutoff[user] = last.ts
            train.extend(earlier)
        else:
            train.extend(events)
    return _split(LEAVE_LAST_OUT, train, targets, cutoff)


def global_time_split(dataset: Dataset, test_fraction: float = 0.2,
                      positive_threshold: float = 3.5) -> Split:
    """One cut time for everybody, so no model sees anything from the test period.

    The cut is the timestamp at the `1 - test_fraction` quantile of all interactions;
    training is everything strictly before it. A user with training history gets as
    targets, in first-seen order, the distinct items they interacted with at or after
    the cut that they had not consumed before it, keeping only items none of whose
    post-cut ratings is below the threshold. Users without training history or
    without targets are not test users.
    """
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be between 0 and 1 (exclusive)")
    events = sorted(dataset.interactions, key=lambda i: (i.ts, i.seq))
    if not events:
        return _split(GLOBAL_TIME, [], {}, {})
    cut = events[math.floor(len(events) * (1 - test_fraction))].ts
    train = [e for e in events if e.ts < cut]
    consumed: dict[str, set[str]] = defaultdict(set)
    for e in train:
        consumed[e.user].add(e.item)
    first_seen: dict[str, dict[str, int]] = defaultdict(dict)
    rejected: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.ts < cut or e.user not in consumed or e.item in consumed[e.user]:
            continue
        first_seen[e.user].setdefault(e.item, e.ts)
        if not is_positive(e, positive_threshold):
            rejected[e.user].add(e.item)
    targets: dict[str, list[str]] = {}
    cutoff: dict[str, int] = {}
    for user, seen in first_seen.items():
        kept = [item for item in seen if item not in rejected[user]]
        if kept:
            targets[user] = kept
            cutoff[user] = seen[kept[0]]
    return _split(GLOBAL_TIME, train, targets, cutoff)


def validation_split(dataset: Dataset, split: Callable[[Dataset], Split]) -> Split:
    """The same protocol applied again to the training part of `split(dataset)`.

    Its targets come from the test split's training data only, so nothing chosen by
    scoring it (a weight, a feature, a rule) has seen a test target: tune on this
    split, report on the test split. Under leave-last-out a test user's validation
    target is the positive before their test target; under global-time the cut falls
    inside the test split's training period. The protocol reads e.g.
    `leave-last-out-validation`.
    """
    outer = split(dataset)
    inner = split(Dataset(name=dataset.name, interactions=outer.train, items=dataset.items))
    return Split(protocol=outer.protocol + VALIDATION, train=inner.train,
                 history=inner.history, targets=inner.targets, cutoff=inner.cutoff)


def sample_users(split: Split, n: int, seed: int) -> Split:
    """The same split scored on `n` test users drawn with `seed` (all if fewer exist).

    Training data and histories are untouched, so models are fitted exactly as on the
    full split; only who gets scored changes.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    users = sorted(split.targets)
    chosen = set(random.Random(seed).sample(users, min(n, len(users))))
    return Split(protocol=split.protocol, train=split.train, history=split.history,
                 targets={u: t for u, t in split.targets.items() if u in chosen},
                 cutoff={u: c for u, c in split.cutoff.items() if u in chosen})


def _by_user(interactions: Iterable[Interaction]) -> dict[str, list[Interaction]]:
    grouped: dict[str, list[Interaction]] = defaultdict(list)
    for e in sorted(interactions, key=lambda i: (i.ts, i.seq)):
        grouped[e.user].append(e)
    return dict(grouped)


def _split(protocol: str, train: list[Interaction], targets: dict[str, list[str]],
           cutoff: dict[str, int]) -> Split:
    ordered = sorted(train, key=lambda i: (i.ts, i.seq))
    return Split(protocol=protocol, train=ordered, history=_by_user(ordered),
                 targets=targets, cutoff=cutoff)
