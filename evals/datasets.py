"""Loaders that turn public rating logs and a generic JSONL format into a `Dataset`.

`load_movielens` reads any GroupLens MovieLens folder, telling its layout by its ratings
file: `ratings.csv` (ml-latest, ml-20m/25m/32m), `ratings.dat` (ml-1m, ml-10m) or
`u.data` (ml-100k).

ml-latest(-small) and its bundled copy belong to the service (`service.datasets`: the
demo loads them too); they are re-exported here beside the harness's other loaders.
Every loader keeps ids as strings, gives each row its position in the source file as
`seq` (so equal timestamps always replay in the same order), sorts interactions by
`(ts, seq)`, and makes sure every item that appears in an event is in the catalog:
full-catalog ranking needs one, and an event about an item the catalog file forgot
gets a placeholder `ItemInfo` titled with its id rather than being dropped.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.types import Dataset, Interaction, ItemInfo
from service.datasets.movielens import ML_LATEST_SMALL, load_movielens_latest, movie_tags
from service.datasets.types import DatasetFormatError

__all__ = ["ML_LATEST_SMALL", "DatasetFormatError", "load_jsonl", "load_ml100k",
           "load_ml_dat", "load_movielens", "load_movielens_latest"]

# The 19 genre flags at the end of each `u.item` line, in the order the ml-100k README
# lists them. "unknown" marks a film without a genre, so it never becomes a genre.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
ML100K_ITEM_FIELDS = 5 + len(ML100K_GENRES)


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
    return Dataset.ordered("ml-100k", interactions, items)


# ml-1m and ml-10m: `::`-separated `.dat` files (ml-1m's in Latin-1, ml-10m's in UTF-8).
DAT_SEPARATOR = "::"
ML_DAT_NO_GENRES = "(no genres listed)"


def load_ml_dat(path: str | Path) -> Dataset:
    """A GroupLens MovieLens folder in the `.dat` layout (ml-1m, ml-10m): `ratings.dat`
    (UserID::MovieID::Rating::Timestamp), `movies.dat` (MovieID::Title::Genres, genres
    '|'-separated) and, where present (ml-10m), `tags.dat` (UserID::MovieID::Tag::
    Timestamp), each movie's distinct lowercased tags most often applied first."""
    root = Path(path)
    movies_path = root / "movies.dat"
    items: dict[str, ItemInfo] = {}
    for _, fields in _dat_rows(movies_path, 3):
        movie, title, genre_field = fields
        genres = tuple(g for g in genre_field.split("|") if g and g != ML_DAT_NO_GENRES)
        items[movie] = ItemInfo(item_id=movie, title=title.strip(), genres=genres)
    tags_path = root / "tags.dat"
    if tags_path.exists():
        tags = movie_tags((movie, tag) for _, (_, movie, tag, _) in _dat_rows(tags_path, 4))
        items.update((movie, replace(items[movie], tags=found))
                     for movie, found in tags.items() if movie in items)
    interactions = []
    ratings_path = root / "ratings.dat"
    for seq, (line, (user, movie, rating, ts)) in enumerate(_dat_rows(ratings_path, 4)):
        try:
            interactions.append(Interaction(user=user, item=movie, ts=int(ts),
                                            rating=float(rating), seq=seq))
        except ValueError as exc:
            raise DatasetFormatError(ratings_path, line, str(exc)) from None
    return Dataset.ordered(root.resolve().name, interactions, items)


def _dat_rows(path: Path, width: int) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank line's `::`-separated fields, with its line number; UTF-8, or
    Latin-1 when the file is not UTF-8 (ml-1m)."""
    for number, raw in _lines(path, encoding=_dat_encoding(path)):
        fields = raw.split(DAT_SEPARATOR)
        if len(fields) != width:
            raise DatasetFormatError(path, number, f"expected {width} '::'-separated "
                                     f"fields, got {len(fields)}")
        yield number, fields


def _dat_encoding(path: Path) -> str:
    """UTF-8 when the whole file decodes as UTF-8, else Latin-1 (ml-1m's), checked a
    megabyte at a time (ml-10m's ratings are 250 MB)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


# Which loader reads a MovieLens folder, by the file that holds its ratings.
MOVIELENS_LAYOUTS: tuple[tuple[str, str, Callable[[Path], Dataset]], ...] = (
    ("ratings.csv", "ml-latest, ml-20m, ml-25m, ml-32m", load_movielens_latest),
    ("ratings.dat", "ml-1m, ml-10m", load_ml_dat), ("u.data", "ml-100k", load_ml100k))


def load_movielens(path: str | Path) -> Dataset:
    """Any GroupLens MovieLens folder, its layout told by its ratings file
    (`MOVIELENS_LAYOUTS`)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no MovieLens folder at {root}")
    for name, _, loader in MOVIELENS_LAYOUTS:
        if (root / name).exists():
            return loader(root)
    known = "; ".join(f"{name} ({sets})" for name, sets, _ in MOVIELENS_LAYOUTS)
    raise FileNotFoundError(f"no MovieLens ratings file in {root}: expected one of {known}")


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
    return Dataset.ordered(name or events_file.stem, interactions, items)


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
