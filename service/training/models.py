"""The tenant's trained candidate sources, fitted together on one log and saved together.

`fit_base_models` fits every source the data supports (a source without enough data
is skipped with a note, and `candidates` then leaves it out); `BaseModels` answers the
`TenantModels` questions except the ranker's, which `store.TrainedModels` adds.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from service.training.content import ContentSimilarity
from service.training.contract import (
    MODEL_SOURCES,
    CandidateSource,
    InteractionLog,
    SourceHit,
    UserEvent,
)
from service.training.cooccurrence import CoOccurrence
from service.training.data import (
    POSITIVE,
    History,
    Ints,
    Ranked,
    indices_of,
    indices_of_list,
    row_entries,
)
from service.training.popularity import Popularity
from service.training.sequence import SequenceModel
from service.training.transitions import Transitions

# Below these, collaborative sources learn noise: skip them (facets and popular remain).
MIN_USERS = 2
MIN_POSITIVE_EVENTS = 20

BASE_FILE = "base.json"


@dataclass
class BaseModels:
    """Fitted sources over one catalog: `item_ids[i]` is catalog index i."""

    item_ids: list[str]
    cooccurrence: CoOccurrence | None = None
    transition: Transitions | None = None
    sequence: SequenceModel | None = None
    content: ContentSimilarity | None = None
    popular: Popularity | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.item_ids)}

    @property
    def sources(self) -> list[CandidateSource]:
        return [s for s in MODEL_SOURCES if getattr(self, _ATTRIBUTE[s]) is not None]

    def ranked(self, history: list[UserEvent], n: int, exclude: set[str],
               now: float, popular: bool = True) -> dict[CandidateSource, Ranked]:
        """Each fitted source's top n as catalog indices (what `candidates` names): the
        personal ones (read the history) and, with `popular`, the popular one (reads
        `now`; `popular_hits` asks it alone)."""
        excluded = indices_of(self.index, exclude)
        out = self._personal(history, n, excluded)
        if popular and self.popular is not None:
            out["popular"] = self.popular.recommend(n, excluded, now)
        return out

    def _personal(self, history: list[UserEvent], n: int, excluded: Ints
                  ) -> dict[CandidateSource, Ranked]:
        h = History.of(history, self.index)
        out: dict[CandidateSource, Ranked] = {}
        if self.cooccurrence is not None:
            out["cooccurrence"] = self.cooccurrence.recommend(h, n, excluded)
        if self.transition is not None:
            out["transition"] = self.transition.recommend(h, n, excluded)
        if self.sequence is not None:
            out["sequence"] = self.sequence.recommend(h, n, excluded)
        if self.content is not None:
            out["content"] = self.content.recommend(h, n, excluded)
        return out

    def candidates(self, history: list[UserEvent], n: int, exclude: set[str],
                   now: float, popular: bool = True
                   ) -> dict[CandidateSource, dict[str, SourceHit]]:
        """Up to n items per fitted source, none in `exclude`; `via` and `vias` index
        `history`. `popular` as in `ranked`."""
        return {source: self._hits(ranked) for source, ranked in self.ranked(
            history, n, exclude, now, popular).items()}

    def popular_hits(self, n: int, excluded: Ints, now: float
                     ) -> dict[CandidateSource, dict[str, SourceHit]]:
        """`candidates`' popular answer alone, the exclusions given as catalog indices."""
        if self.popular is None:
            return {}
        return {"popular": self._hits(self.popular.recommend(n, excluded, now))}

    def popular_counts(self, now: float) -> object | None:
        """What popular's answer as of `now` is a function of, beside n and the
        exclusions: its counts (the same object until they change), None without it."""
        return None if self.popular is None else self.popular.counts(now)

    def _hits(self, ranked: Ranked) -> dict[str, SourceHit]:
        return {
            self.item_ids[item]: SourceHit(
                score=float(score), rank=rank, via=None if via < 0 else int(via),
                vias=tuple(v for v in vias if v >= 0))
            for rank, (item, score, via, vias) in enumerate(zip(
                ranked.items.tolist(), ranked.scores.tolist(), ranked.via.tolist(),
                ranked.via_columns().tolist(), strict=True))}

    def popularity(self, item_ids: list[str], now: float
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(recent, all-time) popularity of each item in [0, 1]; 0 for unknown items."""
        if self.popular is None:
            zeros = np.zeros(len(item_ids), dtype=np.float32)
            return zeros, zeros.copy()
        items = indices_of_list(self.index, item_ids)
        recent, all_time = self.popular.scores(items, now)
        return recent.astype(np.float32), all_time.astype(np.float32)

    def cooccurrence_means(self, groups: Sequence[Sequence[str]], columns: Sequence[str]
                           ) -> npt.NDArray[np.float64]:
        """For each group of row items, the mean over its distinct items of their
        co-occurrence neighbour score of each column item (groups x columns): an unknown
        item, or a pair that does not neighbour, counts 0; all 0 without the source."""
        out = np.zeros((len(groups), len(columns)), dtype=np.float64)
        if self.cooccurrence is None or not len(groups) or not len(columns):
            return out
        distinct = [tuple(dict.fromkeys(group)) for group in groups]
        col_in = indices_of_list(self.index, columns)
        known_cols = np.flatnonzero(col_in >= 0)
        row_in = indices_of_list(self.index, [i for g in distinct for i in g])
        group_of = np.repeat(np.arange(len(distinct)), [len(g) for g in distinct])
        known_rows = row_in >= 0
        if len(known_cols) and known_rows.any():
            # The rows' stored neighbours straight from the CSR arrays, kept where they are
            # among the columns, summed per (group, column) by one bincount in row order
            # (the order a row-by-row sum takes): a dense rows x columns block and a mean
            # per group cost more than the rest of a request's co-occurrence columns.
            matrix = self.cooccurrence.matrix
            at, lengths = row_entries(matrix, row_in[known_rows])
            position = np.full(matrix.shape[1], -1, dtype=np.int64)
            position[col_in[known_cols]] = known_cols  # a repeated column: its last position
            found = position[matrix.indices[at]]
            hit = found >= 0
            cell = np.repeat(group_of[known_rows], lengths)[hit] * len(columns) + found[hit]
            out = np.bincount(cell, weights=matrix.data[at][hit].astype(np.float64),
                              minlength=out.size).astype(np.float64).reshape(out.shape)
            # A column item given twice reads its sums from the position filled (serving's
            # candidates are unique: nothing to copy then).
            filled = position[col_in[known_cols]]
            if not np.array_equal(filled, known_cols):
                out[:, known_cols] = out[:, filled]
        sizes = np.array([max(len(g), 1) for g in distinct], dtype=np.float64)
        means: npt.NDArray[np.float64] = out / sizes[:, None]
        return means

    def save(self, directory: Path) -> None:
        """Arrays as .npz, the sequence model as a torch state_dict, the rest as JSON."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BASE_FILE).write_text(json.dumps(
            {"item_ids": self.item_ids, "sources": list(self.sources), "notes": self.notes}))
        for source in self.sources:
            model = getattr(self, _ATTRIBUTE[source])
            model.save(directory)

    @classmethod
    def load(cls, directory: Path) -> BaseModels:
        base = json.loads((directory / BASE_FILE).read_text())
        sources = set(base["sources"])
        return cls(
            item_ids=list(base["item_ids"]), notes=list(base["notes"]),
            cooccurrence=CoOccurrence.load(directory) if "cooccurrence" in sources else None,
            transition=Transitions.load(directory) if "transition" in sources else None,
            sequence=SequenceModel.load(directory) if "sequence" in sources else None,
            content=ContentSimilarity.load(directory) if "content" in sources else None,
            popular=Popularity.load(directory) if "popular" in sources else None)


_ATTRIBUTE: dict[CandidateSource, str] = {
    "cooccurrence": "cooccurrence", "transition": "transition", "sequence": "sequence",
    "content": "content", "popular": "popular"}


def fit_base_models(log: InteractionLog, item_texts: Mapping[str, str], *, seed: int = 0,
                    sequence_seconds: float = 60.0, sequence_epochs: int | None = None,
                    progress: bool = False,
                    sequence_start: SequenceModel | None = None) -> BaseModels:
    """Fit every source the log supports over the catalog (logged items, then the items
    only `item_texts` knows, which only content can suggest).

    The sequence model trains for `sequence_seconds`, or, given `sequence_epochs`, for
    that many epochs whatever the time (the evaluation's choice: a time budget trains
    less on a busy machine, so results would follow the load). `sequence_start`: a
    sequence model fitted on part of this log, which training continues from
    (`SequenceModel.fit`'s `start_from`)."""
    known = set(log.item_ids)
    item_ids = list(log.item_ids) + sorted(i for i in item_texts if i not in known)
    n = len(item_ids)
    models = BaseModels(item_ids=item_ids)
    users = len(np.unique(log.users))
    positives = int((log.weight >= POSITIVE).sum())
    collaborative = users >= MIN_USERS and positives >= MIN_POSITIVE_EVENTS
    if not collaborative:
        models.notes.append(
            f"co-occurrence, transitions and sequence skipped: {users} user(s) and "
            f"{positives} positive event(s); they need at least {MIN_USERS} users and "
            f"{MIN_POSITIVE_EVENTS} positive events")
    bar = tqdm(total=len(MODEL_SOURCES), desc="fitting models", unit="model",
               disable=not progress, file=sys.stderr, leave=False)
    try:
        if collaborative:
            bar.set_postfix_str("co-occurrence")
            models.cooccurrence = CoOccurrence().fit(log, n)
            bar.update()
            bar.set_postfix_str("transitions")
            models.transition = Transitions().fit(log, n)
            bar.update()
            bar.set_postfix_str("sequence")
            sequence = SequenceModel(
                seed=seed, seconds=math.inf if sequence_epochs else sequence_seconds,
                max_epochs=sequence_epochs or SequenceModel.MAX_EPOCHS).fit(
                log, n, progress=lambda epoch, loss: bar.set_postfix_str(
                    f"sequence epoch {epoch + 1} loss {loss:.3f}"), start_from=sequence_start)
            if sequence.net is not None:
                models.sequence = sequence
            else:
                models.notes.append("sequence skipped: no user has two events in a row")
            bar.update()
        else:
            bar.update(3)
        bar.set_postfix_str("content")
        try:
            models.content = _fit_content(item_ids, item_texts)
        except ValueError:  # scikit-learn's "empty vocabulary"
            models.notes.append("content skipped: no item has text to compare")
        bar.update()
        if (log.weight > 0).any():
            models.popular = Popularity().fit(log, n)
        else:
            models.notes.append("popular skipped: no positive events")
        bar.update()
    finally:
        bar.close()
    return models


# The content model reads only the catalog's texts, so training's several fits (held-out
# models, the ranker's folds, the final models) can share one: finding 100k items'
# neighbours takes seconds. Held weakly, so it lives no longer than the models using it.
_content_lock = threading.RLock()  # the weakref callback may run inside it (a GC pass)
_content_fitted: tuple[tuple[str, ...], tuple[str, ...],
                       weakref.ReferenceType[ContentSimilarity]] | None = None


def _fit_content(item_ids: list[str], item_texts: Mapping[str, str]) -> ContentSimilarity:
    """A content model of these items and texts: the last one fitted, if still alive."""
    global _content_fitted
    ids = tuple(item_ids)
    texts = tuple(item_texts.get(i, "") for i in item_ids)
    with _content_lock:
        fitted = _content_fitted
    if fitted is not None and fitted[0] == ids and fitted[1] == texts:
        model = fitted[2]()
        if model is not None:
            return model
    model = ContentSimilarity().fit(item_ids, item_texts)
    with _content_lock:
        _content_fitted = (ids, texts, weakref.ref(model, _forget_content))
    return model


def _forget_content(gone: weakref.ReferenceType[ContentSimilarity]) -> None:
    """Drop the cache's key (the catalog's texts) with the model it was for."""
    global _content_fitted
    with _content_lock:
        if _content_fitted is not None and _content_fitted[2] is gone:
            _content_fitted = None
