"""The label-quality metric: topic labels count, titles, years and references do not."""

from __future__ import annotations

from typing import Any

import pytest

from evals.labels import label_quality, labels_of


def test_titles_years_and_references_are_not_topic_labels() -> None:
    titles = {"u1": ["Megamind (2010)", "Toy Story (1995)"], "u2": ["Alien (1979)"]}
    labels = {"u1": ["Megamind", "Animation, Children", "Films of 2010", "Animation, Children"],
              "u2": ["Space horror", "E12 and E13"]}
    got = label_quality(labels, titles)
    assert got == {"facet_labels": 5.0, "topic_label_share": pytest.approx(2 / 5),
                   "title_labels": 1.0, "year_or_reference_labels": 2.0}
    assert label_quality({"u1": []}, titles) == {}


def test_labels_are_read_from_every_version() -> None:
    versions: list[dict[str, Any]] = [{"facets": [{"label": "Jazz"}, {"label": "Hiking"}]},
                {"facets": [{"label": "Jazz"}]}, {"facets": []}]
    assert labels_of(versions) == {"Jazz", "Hiking"}
