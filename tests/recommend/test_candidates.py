"""Catalog reads on the recommendation path give the tags grouping and calibration use."""

from __future__ import annotations

import json

import pytest

from service.catalog.service import stored_tag_keys, tag_keys


@pytest.mark.parametrize(("tags", "category"), [
    (["Sci-Fi", "  space   opera ", "sci-fi", ""], "Film"),
    ([], "book"),
    (["cooking"], None),
    ([], None),
])
def test_stored_tags_give_the_same_keys_as_the_decoded_ones(tags: list[str],
                                                            category: str | None) -> None:
    assert stored_tag_keys(json.dumps(tags), category) == tag_keys(tags, category)


def test_a_row_without_stored_tags_keeps_its_category() -> None:
    assert stored_tag_keys(None, "Film") == ("category:film",)
    assert stored_tag_keys(json.dumps(["Sci-Fi", "space"]), "Film") == (
        "sci-fi", "space", "category:film")
