"""Loaders: real ml-latest-small counts, the ml-100k and ml-1m/ml-10m layouts, telling
a MovieLens folder's layout, the generic JSONL format."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.datasets import (
    ML_LATEST_SMALL,
    DatasetFormatError,
    load_jsonl,
    load_ml100k,
    load_ml_dat,
    load_movielens,
    load_movielens_latest,
)
from evals.types import Dataset
from tests.utils.evals import write_jsonl


def _assert_time_ordered(dataset: Dataset) -> None:
    keys = [(i.ts, i.seq) for i in dataset.interactions]
    assert keys == sorted(keys)
    assert len({i.seq for i in dataset.interactions}) == len(keys)


# ml-latest-small, the real bundled copy


def test_bundled_copy_keeps_its_licence_readme() -> None:
    readme = ML_LATEST_SMALL / "README.txt"
    assert "Usage License" in readme.read_text(encoding="utf-8")
    for name in ("ratings.csv", "movies.csv", "tags.csv", "links.csv"):
        assert (ML_LATEST_SMALL / name).is_file()


def test_ml_latest_small_counts(ml_latest: Dataset) -> None:
    assert ml_latest.name == "ml-latest-small"
    assert len(ml_latest.interactions) == 100_836
    assert len({i.user for i in ml_latest.interactions}) == 610
    assert len(ml_latest.items) == 9_742  # every rated movie is in movies.csv: no placeholders
    assert all(isinstance(i.user, str) and isinstance(i.item, str)
               for i in ml_latest.interactions[:100])
    _assert_time_ordered(ml_latest)


def test_ml_latest_small_parses_quoted_titles_genres_and_tags(ml_latest: Dataset) -> None:
    president = ml_latest.items["11"]
    assert president.title == "American President, The (1995)"
    assert president.genres == ("Comedy", "Drama", "Romance")
    assert ml_latest.items["114335"].genres == ()  # "(no genres listed)"
    toy_story = ml_latest.items["1"]
    assert toy_story.tags and all(t == t.lower() for t in toy_story.tags)
    assert "pixar" in toy_story.tags
    tagged = [info for info in ml_latest.items.values() if info.tags]
    assert tagged and max(len(info.tags) for info in tagged) <= 10
    ratings = {i.rating for i in ml_latest.interactions}
    assert None not in ratings
    rated = {r for r in ratings if r is not None}
    assert min(rated) == 0.5 and max(rated) == 5.0


def _write_ml_latest(root: Path, tags: list[str]) -> Path:
    root.mkdir()
    (root / "movies.csv").write_text(
        'movieId,title,genres\n1,"Good, the Bad (1966)",Western|Drama\n'
        "2,Nothing (2000),(no genres listed)\n", encoding="utf-8")
    (root / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n7,2,3.0,100\n7,1,4.5,100\n8,1,1.0,50\n"
        "8,3,5.0,100\n", encoding="utf-8")
    (root / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n" + "".join(f"7,1,{t},1\n" for t in tags),
        encoding="utf-8")
    return root


def test_ml_latest_tags_distinct_lowercased_most_frequent_first(tmp_path: Path) -> None:
    rare = [f"rare{n}" for n in range(12)]
    tags = ["Gritty", *rare, "gritty", "GRITTY", "long  Takes", "Long takes"]
    dataset = load_movielens_latest(_write_ml_latest(tmp_path / "ml-latest", tags))
    western = dataset.items["1"]
    assert western.title == "Good, the Bad (1966)"
    assert western.genres == ("Western", "Drama")
    assert western.tags[:2] == ("gritty", "long takes")
    assert western.tags[2:] == tuple(rare[:8])  # equal counts keep file order; 10 at most
    assert dataset.items["2"].genres == ()
    assert dataset.name == "ml-latest"


def test_ml_latest_ties_follow_file_rows_and_unknown_items_get_placeholders(
        tmp_path: Path) -> None:
    dataset = load_movielens_latest(_write_ml_latest(tmp_path / "ml", ["x"]))
    assert [(i.user, i.item, i.ts) for i in dataset.interactions] == [
        ("8", "1", 50), ("7", "2", 100), ("7", "1", 100), ("8", "3", 100)]
    assert [i.seq for i in dataset.interactions] == [2, 0, 1, 3]
    assert dataset.items["3"].title == "3"


# ml-100k, in the GroupLens layout


def _ml100k_item(movie: int, title: str, genres: set[int]) -> str:
    flags = "|".join("1" if n in genres else "0" for n in range(19))
    return f"{movie}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{flags}"


def _write_ml100k(root: Path, extra_item_line: str | None = None) -> Path:
    root.mkdir()
    lines = [
        _ml100k_item(1, "Toy Story (1995)", {3, 4, 5}),  # Animation, Children's, Comedy
        _ml100k_item(2, "Misérables, Les (1995)", {8, 14}),  # Drama, Romance
        _ml100k_item(3, "Untitled (1996)", {0}),  # only "unknown"
        _ml100k_item(4, "Noir Western (1950)", {1, 10, 18}),  # Action, Film-Noir, Western
    ]
    if extra_item_line is not None:
        lines.append(extra_item_line)
    (root / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (root / "u.data").write_text(
        "196\t2\t3\t881250949\n186\t1\t5\t881250949\n22\t4\t1\t879024327\n"
        "196\t3\t4\t891717742\n", encoding="latin-1")
    return root


def test_ml100k_layout(tmp_path: Path) -> None:
    dataset = load_ml100k(_write_ml100k(tmp_path / "ml-100k"))
    assert dataset.name == "ml-100k"
    assert len(dataset.interactions) == 4
    assert len(dataset.items) == 4
    assert dataset.items["1"].genres == ("Animation", "Children's", "Comedy")
    assert dataset.items["2"].title == "Misérables, Les (1995)"
    assert dataset.items["2"].genres == ("Drama", "Romance")
    assert dataset.items["3"].genres == ()
    assert dataset.items["4"].genres == ("Action", "Film-Noir", "Western")
    first, tied_a, tied_b, last = dataset.interactions
    assert (first.user, first.item, first.ts, first.rating) == ("22", "4", 879024327, 1.0)
    assert (tied_a.user, tied_b.user) == ("196", "186")  # same second: file order
    assert last.ts == 891717742
    _assert_time_ordered(dataset)


def test_ml100k_bad_item_line_names_its_line(tmp_path: Path) -> None:
    root = _write_ml100k(tmp_path / "ml-100k", extra_item_line="5|Short line|01-Jan-1995")
    with pytest.raises(DatasetFormatError, match=r"u\.item:5: expected 24"):
        load_ml100k(root)


# ml-1m / ml-10m (`::`-separated .dat files)


def _write_ml_dat(root: Path, encoding: str = "latin-1", tags: bool = False,
                  extra_rating: str = "") -> Path:
    """ml-1m's layout (Latin-1), or ml-10m's (UTF-8, with tags.dat)."""
    root.mkdir(parents=True)
    (root / "movies.dat").write_text(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Misérables, Les (1995)::Drama|Romance\n"
        "3::Odd Film (2001)::(no genres listed)\n", encoding=encoding)
    (root / "ratings.dat").write_text(
        "1::1::5::978300760\n2::2::3.5::978300760\n\n1::4::1::978000000\n" + extra_rating,
        encoding=encoding)
    if tags:
        (root / "tags.dat").write_text(
            "1::1::Pixar::978300761\n2::1::funny::978300762\n3::1::pixar::978300763\n"
            "3::2::  Paris   Sewers ::978300764\n", encoding=encoding)
    return root


@pytest.mark.parametrize("encoding", ["latin-1", "utf-8"])
def test_ml_dat_layout(tmp_path: Path, encoding: str) -> None:
    dataset = load_ml_dat(_write_ml_dat(tmp_path / "ml-1m", encoding))
    assert dataset.name == "ml-1m"
    assert dataset.items["1"].genres == ("Animation", "Children's", "Comedy")
    assert dataset.items["2"].title == "Misérables, Les (1995)"  # either encoding
    assert dataset.items["3"].genres == ()
    assert "4" in dataset.items  # rated but not in movies.dat: a placeholder
    first, tied_a, tied_b = dataset.interactions
    assert (first.user, first.item, first.ts, first.rating) == ("1", "4", 978000000, 1.0)
    assert (tied_a.item, tied_b.item, tied_b.rating) == ("1", "2", 3.5)  # file order
    _assert_time_ordered(dataset)


def test_ml10m_tags_are_distinct_lowercased_most_frequent_first(tmp_path: Path) -> None:
    dataset = load_ml_dat(_write_ml_dat(tmp_path / "ml-10M100K", "utf-8", tags=True))
    assert dataset.items["1"].tags == ("pixar", "funny")
    assert dataset.items["2"].tags == ("paris sewers",)


def test_ml_dat_bad_line_names_file_and_line(tmp_path: Path) -> None:
    root = _write_ml_dat(tmp_path / "ml-1m", extra_rating="5::1::4\n")
    with pytest.raises(DatasetFormatError, match=r"ratings\.dat:5: expected 4 '::'"):
        load_ml_dat(root)
    bad = _write_ml_dat(tmp_path / "bad", extra_rating="5::1::four::978300760\n")
    with pytest.raises(DatasetFormatError, match=r"ratings\.dat:5: could not convert"):
        load_ml_dat(bad)


def test_a_movielens_folders_layout_is_told_by_its_ratings_file(tmp_path: Path) -> None:
    assert load_movielens(_write_ml_dat(tmp_path / "ml-1m")).name == "ml-1m"
    assert load_movielens(_write_ml100k(tmp_path / "ml-100k")).name == "ml-100k"
    assert len(load_movielens(ML_LATEST_SMALL).interactions) == 100_836
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"ratings\.csv .*ratings\.dat .*u\.data"):
        load_movielens(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no MovieLens folder"):
        load_movielens(tmp_path / "missing")


# generic JSONL


def _items(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "items.jsonl", [
        {"item_id": "a", "title": "Alpha", "description": "First letter.",
         "tags": ["greek", "Greek", "letter"], "category": "letters"},
        {"item_id": 2, "title": "Two", "category": ["numbers", "even"]},
        {"item_id": "c", "title": "Gamma"},
    ])


def test_jsonl_happy_path(tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [
        {"user_id": "u1", "item_id": "a", "ts": 1577836800, "rating": 4},
        {"user_id": 7, "item_id": 2, "ts": "2020-01-01T00:00:00Z"},
        "",
        {"user_id": "u1", "item_id": "c", "ts": "2019-12-31T23:00:00", "rating": None},
        {"user_id": "u2", "item_id": "a", "ts": "2020-01-01T02:00:00+01:00", "rating": 2.5},
        {"user_id": "u2", "item_id": "zz", "ts": 1577836799.9},
    ])
    dataset = load_jsonl(events, _items(tmp_path))
    assert dataset.name == "events"
    got = [(i.user, i.item, i.ts, i.rating, i.seq) for i in dataset.interactions]
    assert got == [
        ("u1", "c", 1577833200, None, 2),
        ("u2", "zz", 1577836799, None, 4),
        ("u1", "a", 1577836800, 4.0, 0),
        ("7", "2", 1577836800, None, 1),
        ("u2", "a", 1577840400, 2.5, 3),
    ]
    alpha = dataset.items["a"]
    assert (alpha.title, alpha.description) == ("Alpha", "First letter.")
    assert alpha.tags == ("greek", "Greek", "letter")
    assert alpha.genres == ("letters",)
    assert dataset.items["2"].genres == ("numbers", "even")
    assert dataset.items["zz"].title == "zz"  # unknown to the items file: placeholder


@pytest.mark.parametrize(("bad_line", "problem"), [
    ("{not json", "invalid JSON"),
    ('["a", "list"]', "expected a JSON object"),
    ('{"item_id": "a", "ts": 1}', "'user_id'"),
    ('{"user_id": "u", "item_id": "", "ts": 1}', "'item_id'"),
    ('{"user_id": "u", "item_id": "a", "ts": "yesterday"}', "neither unix seconds nor ISO"),
    ('{"user_id": "u", "item_id": "a"}', "'ts' is missing"),
    ('{"user_id": "u", "item_id": "a", "ts": 1, "rating": true}', "'rating'"),
    ('{"user_id": "u", "item_id": "a", "ts": 1, "rating": "5"}', "'rating'"),
])
def test_jsonl_bad_event_line_names_file_and_line(tmp_path: Path, bad_line: str,
                                                  problem: str) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [
        {"user_id": "u", "item_id": "a", "ts": 1}, "", bad_line,
        {"user_id": "u", "item_id": "c", "ts": 2}])
    with pytest.raises(DatasetFormatError) as caught:
        load_jsonl(events, _items(tmp_path))
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{events}:3: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(("bad_line", "problem"), [
    ('{"item_id": "d"}', "'title'"),
    ('{"item_id": "a", "title": "Again"}', "duplicate item_id 'a'"),
    ('{"item_id": "d", "title": "D", "tags": "x, y"}', ""),  # a string is one tag: fine
    ('{"item_id": "d", "title": "D", "tags": [1, 2]}', "'tags'"),
    ('{"item_id": "d", "title": "D", "description": 5}', "'description'"),
])
def test_jsonl_bad_item_line_names_file_and_line(tmp_path: Path, bad_line: str,
                                                 problem: str) -> None:
    items = write_jsonl(tmp_path / "items.jsonl", [{"item_id": "a", "title": "A"}, bad_line])
    events = write_jsonl(tmp_path / "events.jsonl", [{"user_id": "u", "item_id": "a", "ts": 1}])
    if not problem:
        assert load_jsonl(events, items).items["d"].tags == ("x, y",)
        return
    with pytest.raises(DatasetFormatError, match=rf"items\.jsonl:2: .*{problem}"):
        load_jsonl(events, items)


def test_timestamp_ties_are_broken_by_file_order_every_time(tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [
        {"user_id": "u", "item_id": "c", "ts": 10},
        {"user_id": "u", "item_id": "a", "ts": 10},
        {"user_id": "u", "item_id": "zz", "ts": 5},
        {"user_id": "u", "item_id": "2", "ts": 10},
    ])
    first = load_jsonl(events, _items(tmp_path))
    assert [i.item for i in first.interactions] == ["zz", "c", "a", "2"]
    assert first.interactions == load_jsonl(events, _items(tmp_path)).interactions
