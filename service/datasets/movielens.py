"""ml-latest(-small) from GroupLens, and the bundled copy of ml-latest-small.

The copy (with its licence README) lives in `data/` beside this file, so it ships with
the service package: the demo tenant loads it, and so does `interest-tracker eval`.
Ids stay strings; each rating's position in `ratings.csv` is its `seq`, so equal
timestamps always replay in the same order.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from service.datasets.types import Dataset, DatasetFormatError, Interaction, ItemInfo

DATA_DIR = Path(__file__).resolve().parent / "data"
ML_LATEST_SMALL = DATA_DIR / "ml-latest-small"

MAX_TAGS = 10
ML_LATEST_NO_GENRES = "(no genres listed)"


def load_movielens_latest(path: str | Path = ML_LATEST_SMALL) -> Dataset:
    """ml-latest(-small): `ratings.csv`, `movies.csv` and, if present, `tags.csv`.

    Read with the csv module because titles quote their commas. Each movie's tags are
    its distinct lowercased tags, most often applied first, at most `MAX_TAGS`.
    """
    root = Path(path)
    tags = (movie_tags(pair for _, pair in _csv_rows(root / "tags.csv", ("movieId", "tag")))
            if (root / "tags.csv").exists() else {})
    items: dict[str, ItemInfo] = {}
    for _, (movie, title, genre_field) in _csv_rows(root / "movies.csv",
                                                    ("movieId", "title", "genres")):
        genres = tuple(g for g in genre_field.split("|") if g and g != ML_LATEST_NO_GENRES)
        items[movie] = ItemInfo(item_id=movie, title=title, genres=genres,
                                tags=tags.get(movie, ()))
    interactions = []
    rows = _csv_rows(root / "ratings.csv", ("userId", "movieId", "rating", "timestamp"))
    for seq, (line, (user, movie, rating, ts)) in enumerate(rows):
        try:
            interactions.append(Interaction(user=user, item=movie, ts=int(ts),
                                            rating=float(rating), seq=seq))
        except ValueError as exc:
            raise DatasetFormatError(root / "ratings.csv", line, str(exc)) from None
    return Dataset.ordered(root.resolve().name, interactions, items)


def movie_tags(rows: Iterable[Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """(movie, tag) rows as each movie's distinct lowercased tags, most often applied
    first, at most `MAX_TAGS`."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for movie, raw_tag in rows:
        tag = " ".join(raw_tag.lower().split())
        if tag:
            counts[movie][tag] += 1
    # Counter.most_common keeps first-seen order among equal counts, so ties are stable.
    return {movie: tuple(tag for tag, _ in c.most_common(MAX_TAGS)) for movie, c in counts.items()}


def _csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """The named columns of each data row, in the order asked, with its line number."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetFormatError(path, 1, f"header lacks column(s) {', '.join(missing)}")
        where = [header.index(c) for c in columns]
        width = max(where) + 1
        for row in reader:
            if not row:
                continue
            if len(row) < width:
                raise DatasetFormatError(path, reader.line_num, "too few fields")
            yield reader.line_num, [row[i] for i in where]
