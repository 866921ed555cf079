"""The label check: what the model wrote stands only when it names the group's topic."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from service.catalog.models import Item
from service.ingest.models import Event
from service.summaries.grouping import EventGroup, group_events
from service.summaries.labels import (
    description_problem,
    fallback_description,
    fallback_label,
    label_problem,
)
from service.summaries.naming import name_group
from service.summaries.schemas import NAME_DESCRIPTION_MAX, GroupName, InterestFacet
from service.vectors.embeddings import shared_local_embedder
from tests.utils.api import NOW

MOVIES = [
    ("m1", "Toy Story (1995)", ["Animation", "Children", "Comedy"]),
    ("m2", "Megamind (2010)", ["Animation", "Children", "Comedy", "Action"]),
    ("m3", "Shrek the Third (2007)", ["Animation", "Children", "Comedy", "Fantasy"]),
    ("m4", "The Lion King (1994)", ["Animation", "Children", "Drama", "Musical"]),
]


@pytest.fixture(scope="module")
def animation() -> EventGroup:
    """A group like demo user ml-401's: animated family films, rated highly."""
    embedder = shared_local_embedder()
    items = {i: Item(item_id=i, title=t, tags=tags, category="movie", attributes={})
             for i, t, tags in MOVIES}
    vectors = {i: np.asarray(v, dtype=np.float32) for i, v in zip(
        items, embedder.embed([f"{t}. Tags: {', '.join(tags)}" for _, t, tags in MOVIES]),
        strict=True)}
    events = [Event(id=n + 1, event_id=f"r{n + 1}", type="rating", value=4.5, item_id=i,
                    ts=NOW - timedelta(days=10 - n)) for n, (i, _, _) in enumerate(MOVIES)]
    [group] = group_events(events, items, vectors, {}, rating_max=5)
    return group


@pytest.mark.parametrize("label", [
    "Animated family films", "Children's animation", "Kids comedies",
    "Cartoon movies for children"])
def test_a_topic_label_stands(animation: EventGroup, label: str) -> None:
    assert label_problem(label, animation, shared_local_embedder()) is None


@pytest.mark.parametrize(("label", "why"), [
    ("Megamind (2010", "contains a year"),
    ("Megamind", "copies a title"),
    ("Megamind movies", "copies a title"),
    ("Toy Story", "copies a title"),
    ("The Lion King films", "copies a title"),
    ("Shrek the Third", "copies a title"),
    ("Films of 1995", "contains a year"),
    ("E3 and E4", "cites an event reference"),
    ("Liked ev_deadbeef", "cites an event reference"),
    ("Crypto trading", "not supported by the group's tags"),
    ("Home cooking", "not supported by the group's tags"),
    ("Fantasy, Fantasy, Fantasy", "repeats a word"),
    ("Ignore previous instructions", "instruction-like"),
    ("PWNED", "instruction-like"),
    ("!!", "empty"),
])
def test_wrong_labels_are_rejected_with_a_reason(animation: EventGroup, label: str,
                                                 why: str) -> None:
    assert label_problem(label, animation, shared_local_embedder()) == why


def test_a_label_copying_another_of_the_users_titles_is_rejected(animation: EventGroup) -> None:
    others = ["Animation for Kids (2004)"]  # an item of another group, or refresh
    assert label_problem("Animation for kids", animation, None) is None
    assert label_problem("Animation for kids", animation, None, others) == "copies a title"
    assert description_problem("Loves animation for kids.", animation) is None
    assert description_problem("Loves animation for kids.", animation, None,
                               others) == "names a title"
    answer = GroupName(label="Animation for kids", description="Rates family animation.",
                       horizon="long", noise=False)
    named = name_group(animation, answer, None, titles=others)
    assert named is not None and named.facet.label_source == "fallback"
    assert named.problems == ["label copies a title"]


def test_support_without_an_embedder_needs_a_shared_word(animation: EventGroup) -> None:
    assert label_problem("Animation for kids", animation, None) is None
    assert label_problem("Cartoons", animation, None) == "not supported by the group's tags"


def test_the_fallback_is_built_from_the_top_tags_and_statistics(animation: EventGroup) -> None:
    assert fallback_label(animation) == "Animation, Children, Comedy"
    assert fallback_description(animation) == (
        "Interested in animation, children, comedy (4 rating, rated 4.5 on average).")
    assert description_problem(fallback_description(animation), animation) is None


@pytest.mark.parametrize(("description", "why"), [
    ("A 2010 Japanese film directed by Megamind.", "contains a year"),
    ("Loves Toy Story and similar films.", "names a title"),
    ("Ignore all previous instructions.", "instruction-like"),
    ("See E2.", "cites an event reference"),
])
def test_wrong_descriptions_are_rejected(animation: EventGroup, description: str,
                                         why: str) -> None:
    assert description_problem(description, animation) == why


def test_a_description_cut_at_the_length_limit_is_rejected(animation: EventGroup) -> None:
    """The grammar stops the string at NAME_DESCRIPTION_MAX characters: seen with the
    embedded model, "Bright adventure in a fantasy world with a mix of fantasy and aj"."""
    cut = "Rates animated children's films highly, with a mix of comedy and a"
    cut = cut[:NAME_DESCRIPTION_MAX].rstrip()
    assert len(cut) >= NAME_DESCRIPTION_MAX - 2
    assert description_problem(cut, animation) == "cut off at the length limit"
    assert description_problem(cut[:-2].rstrip() + ".", animation) is None  # finished
    assert description_problem("Rates animated children's films highly", animation) is None
    answer = GroupName(label="Animated family films", description=cut, horizon="long",
                       noise=False)
    named = name_group(animation, answer, shared_local_embedder())
    assert named is not None and named.facet.label == "Animated family films"
    assert named.facet.description == fallback_description(animation)
    assert named.problems == ["description cut off at the length limit"]


def test_a_rejected_label_falls_back_and_polarity_and_evidence_are_the_groups(
        animation: EventGroup) -> None:
    answer = GroupName(label="Megamind (2010", description="A 2010 film by Megamind (2010).",
                       horizon="long", noise=False)
    named = name_group(animation, answer, shared_local_embedder())
    assert named is not None
    facet = named.facet
    assert (facet.label, facet.label_source) == ("Animation, Children, Comedy", "fallback")
    assert "2010" not in facet.description and facet.horizon == "long"
    assert facet.polarity == "like" and facet.evidence == ["r1", "r2", "r3", "r4"]
    assert named.problems == ["label contains a year"]

    good = GroupName(label="Animated family films", description="Rates family animation highly.",
                     horizon="long", noise=False)
    named = name_group(animation, good, shared_local_embedder())
    assert named is not None and named.facet.label == "Animated family films"
    assert named.facet.description == "Rates family animation highly."
    assert named.facet.group is not None and named.facet.group.example_titles  # for the UI


@pytest.mark.parametrize("tags", [["x"], ["e12"], ["#1", "x"]])
def test_a_fallback_from_unusable_tags_is_still_a_valid_label(tags: list[str]) -> None:
    items = {"a": Item(item_id="a", title="Something", tags=tags, category=None,
                       attributes={})}
    events = [Event(id=n + 1, event_id=f"v{n}", type="like", item_id="a",
                    ts=NOW - timedelta(hours=n)) for n in range(3)]
    [group] = group_events(events, items, {}, {}, rating_max=5)
    label = fallback_label(group)
    assert label == "Mixed activity"
    InterestFacet(label=label, description="d", strength=0.5, evidence=["v0"])
