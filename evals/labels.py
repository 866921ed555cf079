"""Do ours' facet labels name a topic? The share of labels that are not a title (or part
of one), a year or an event reference, over every label a user's profile versions held.

The check is the service's own (`service.summaries.labels.is_title_copy`, the grouping's
year pattern), run against the titles of the items the user actually had events on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.summaries.grouping import YEAR
from service.summaries.labels import is_title_copy

REFERENCE = re.compile(r"\bE\d+\b")


def labels_of(versions: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every facet label in these profile versions (like and avoid alike)."""
    return {str(f["label"]) for v in versions for f in v.get("facets", [])}


def label_quality(labels: Mapping[str, Iterable[str]],
                  titles: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """`facet_labels` (distinct per user), `topic_label_share`, `title_labels`,
    `year_or_reference_labels`; empty when no user had a label."""
    total = topic = title = marked = 0
    for user, user_labels in labels.items():
        for label in set(user_labels):
            total += 1
            if is_title_copy(label, titles.get(user, ())):
                title += 1
            elif YEAR.search(label) or REFERENCE.search(label):
                marked += 1
            else:
                topic += 1
    if not total:
        return {}
    return {"facet_labels": float(total), "topic_label_share": topic / total,
            "title_labels": float(title), "year_or_reference_labels": float(marked)}
