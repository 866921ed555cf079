"""Naming one group: what the naming prompt shows of it, and the facet its answer makes.

The model names each group from its statistics only (`prompts/name_interest_group`,
one small call per group). A label or description that fails the checks of
`labels.py`, or an answer still unusable after one repair turn, falls back to words
built from the group's tags.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from service.summaries.grouping import EventGroup
from service.summaries.labels import (
    description_problem,
    fallback_description,
    fallback_label,
    label_problem,
)
from service.summaries.schemas import GroupName, InterestFacet, LabelSource
from service.vectors.embeddings import Embedder

NAME_PROMPT = "name_interest_group"
NAME_MAX_OUTPUT = 60  # a bounded GroupName answer is ~35-45 tokens
PROMPT_TAGS = 5
NOISE_BELOW = 3  # a group the model calls noise is dropped when it has fewer events


def naming_variables(group: EventGroup, rating_max: float) -> dict[str, str]:
    """What the naming prompt shows of a group: statistics, never titles or user text.

    Categories only stand in for missing tags: a category most of a catalog shares
    ("movie") is what the small model then names the group after.
    """
    s = group.stats
    names = s.top_tags or s.top_categories
    return {
        "polarity": "avoided" if group.polarity == "avoid" else "liked",
        "count": str(s.count),
        "event_types": ", ".join(f"{t} {n}" for t, n in s.event_types.items()),
        "mean_rating": (f", mean rating {s.mean_rating:g}/{rating_max:g}"
                        if s.mean_rating is not None else ""),
        "tags": ", ".join(f"{t} ({n})" for t, n in list(names.items())[:PROMPT_TAGS]),
    }


@dataclass
class NamedGroup:
    group: EventGroup
    facet: InterestFacet
    problems: list[str]  # why the model's words were replaced, if they were


def name_group(
    group: EventGroup, answer: GroupName | None, embedder: Embedder | None,
    taken: Set[str] = frozenset(), titles: Sequence[str] = (),
) -> NamedGroup | None:
    """The facet for a group: the model's words where they pass the checks, else ours.

    `taken` holds the (casefolded) labels of this run's earlier groups: two groups
    are two interests, and a repeated label would merge them in the profile.
    `titles` are the titles of every item the user has events on: the model never sees
    one, but tag words can spell another group's (or an earlier refresh's) title.
    """
    problems: list[str] = []
    label, description, source = fallback_label(group), fallback_description(group), "fallback"
    if answer is None:
        problems.append("no usable answer")
    else:
        why = label_problem(answer.label, group, embedder, titles)
        if why is None and answer.label.casefold() in taken:
            why = "names an earlier group"
        if why is None:
            label, source = answer.label, "model"
            why_not = description_problem(answer.description, group, embedder, titles)
            if why_not is None:
                description = answer.description
            else:
                problems.append(f"description {why_not}")
        else:
            problems.append(f"label {why}")
    if answer is not None and answer.noise and group.stats.count < NOISE_BELOW:
        return None
    label_source: LabelSource = "model" if source == "model" else "fallback"
    facet = InterestFacet(
        label=label, description=description, strength=group.stats.share,
        horizon=answer.horizon if answer is not None else "short", polarity=group.polarity,
        evidence=group.event_ids, label_source=label_source,
        noise=bool(answer and answer.noise), group=group.stats)
    return NamedGroup(group=group, facet=facet, problems=problems)
