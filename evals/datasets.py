"""Loaders that turn public rating logs and a generic JSONL format into a `Dataset`.

Every loader keeps ids as strings, gives each row its position in the source file as
`seq` (so equal timestamps always replay in the same order), sorts interactions by
`(ts, seq)`, and makes sure every item that appears in an event is in the catalog:
full-catalog ranking needs one, and an event about an item the catalog file forgot
gets a placeholder `ItemInfo` titled with its id rather than being dropped.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.types import Dataset, Interaction, ItemInfo

DATA_DIR = Path(__file__).resolve().parent / "data"
ML_LATEST_SMALL = DATA_DIR / "ml-latest-small"

MAX_TAGS = 10
ML_LATEST_NO_GENRES = "(no genres listed)"

# The 19 genre flags at the end of each `u.item` line, in the order the ml-100k README
# lists them. "unknown" marks a film without a genre, so it never becomes a genre.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
ML100K_ITEM_FIELDS = 5 + len(ML100K_GENRES)


class DatasetFormatError(ValueError):
    """A source file does not follow its format; the message names the file and line."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line


def load_movielens_latest(path: str | Path = ML_LATEST_SMALL) -> Dataset:
    """ml-latest(-small): `ratings.csv`, `movies.csv` and, if present, `tags.csv`.

    Read with the csv module because titles quote their commas. Each movie's tags are
    its distinct lowercased tags, most often applied first, at most `MAX_TAGS`.
    """
    root = Path(path)
    tags = _movielens_tags(root / "tags.csv") if (root / "tags.csv").exists() else {}
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
    return _dataset(root.resolve().name, interactions, items)


def _movielens_tags(path: Path) -> dict[str, tuple[str, ...]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for _, (movie, raw_tag) in _csv_rows(path, ("movieId", "tag")):
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


def load_ml100k(path: str | Path) -> Dataset:
    """The original GroupLens ml-100k folder: tab-separated `u.data`, latin-1 `u.item`."""
    root = Path(path)
    items: dict[str, ItemInfo] = {}
    item_path = root / "u.item"
    for line, text in _lines(item_path, encoding="latin-1"):
        fields = text.split("|")
        if len(fields) != ML100K_ITEM_FIELDS:
            raise DatasetFormatError(item_path, line, f"expected {ML100K_ITEM_FIELDS} "
                                     f"'|'-separated fields, got {len(fields)}")
        flags = fields[5:]
        if any(f not in ("0", "1") for f in flags):
            raise DatasetFormatError(item_path, line, "genre flags must be 0 or 1")
        genres = tuple(g for g, f in zip(ML100K_GENRES, flags, strict=True)
                       if f == "1" and g != "unknown")
        items[fields[0]] = ItemInfo(item_id=fields[0], title=fields[1].strip(), genres=genres)
    interactions = []
    data_path = root / "u.data"
    for seq, (line, text) in enumerate(_lines(data_path, encoding="latin-1")):
        fields = text.split("\t")
        if len(fields) != 4:
            raise DatasetFormatError(data_path, line, f"expected 4 tab-separated fields, "
                                     f"got {len(fields)}")
        user, item, rating, ts = fields
        try:
            interactions.append(Interaction(user=user, item=item, ts=int(ts),
                                            rating=float(rating), seq=seq))
        except ValueError as exc:
            raise DatasetFormatError(data_path, line, str(exc)) from None
    return _dataset("ml-100k", interactions, items)


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers, line endings removed."""
    with path.open(encoding=encoding, newline="") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if text.strip():
                yield number, text


def load_jsonl(events_path: str | Path, items_path: str | Path,
               name: str | None = None) -> Dataset:
    """A platform-neutral export: one JSON object per line for events and for items.

    Events: `{"user_id", "item_id", "ts", "rating"?}` with `ts` in unix seconds or an
    ISO 8601 string (naive times are read as UTC). Items: `{"item_id", "title",
    "description"?, "tags"?, "category"?}`; `category` (a string or a list) becomes the
    item's genres. Blank lines are skipped; any other bad line raises a
    `DatasetFormatError` naming the file and line number.
    """
    events_file, items_file = Path(events_path), Path(items_path)
    items: dict[str, ItemInfo] = {}
    for line, obj in _json_objects(items_file):
        item_id = _id_field(obj, "item_id", items_file, line)
        if item_id in items:
            raise DatasetFormatError(items_file, line, f"duplicate item_id {item_id!r}")
        title = obj.get("title")
        if not isinstance(title, str) or not title.strip():
            raise DatasetFormatError(items_file, line, "'title' must be a non-empty string")
        description = obj.get("description") or ""
        if not isinstance(description, str):
            raise DatasetFormatError(items_file, line, "'description' must be a string")
        items[item_id] = ItemInfo(
            item_id=item_id, title=title.strip(), description=description.strip(),
            tags=_string_list(obj.get("tags"), "tags", items_file, line),
            genres=_string_list(obj.get("category"), "category", items_file, line))
    interactions = []
    for seq, (line, obj) in enumerate(_json_objects(events_file)):
        rating = obj.get("rating")
        if rating is not None and (isinstance(rating, bool)
                                   or not isinstance(rating, int | float)
                                   or not math.isfinite(rating)):
            raise DatasetFormatError(events_file, line, "'rating' must be a number or null")
        interactions.append(Interaction(
            user=_id_field(obj, "user_id", events_file, line),
            item=_id_field(obj, "item_id", events_file, line),
            ts=_timestamp(obj.get("ts"), events_file, line),
            rating=None if rating is None else float(rating), seq=seq))
    return _dataset(name or events_file.stem, interactions, items)


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, text in _lines(path, encoding="utf-8"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(path, line, f"invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DatasetFormatError(path, line, "expected a JSON object")
        yield line, obj


def _id_field(obj: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        raise DatasetFormatError(path, line, f"'{key}' must be a non-empty string or integer")
    return str(value).strip()


def _string_list(value: Any, key: str, path: Path, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DatasetFormatError(path, line, f"'{key}' must be a string or a list of strings")
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def _timestamp(value: Any, path: Path, line: int) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise DatasetFormatError(path, line, "'ts' must be finite")
        return math.floor(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number: float | None = float(text)
        except ValueError:
            number = None
        if number is not None:
            return _timestamp(number, path, line)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise DatasetFormatError(path, line, f"'ts' {value!r} is neither unix seconds "
                                     "nor ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return math.floor(moment.timestamp())
    raise DatasetFormatError(path, line, "'ts' is missing or not a number/ISO 8601 string")


def _dataset(name: str, interactions: Iterable[Interaction],
             items: dict[str, ItemInfo]) -> Dataset:
    ordered = sorted(interactions, key=lambda i: (i.ts, i.seq))
    for interaction in ordered:
        if interaction.item not in items:
            items[interaction.item] = ItemInfo(item_id=interaction.item, title=interaction.item)
    return Dataset(name=name, interactions=ordered, items=items)
