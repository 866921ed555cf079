"""Explanation faithfulness on hand-built lists whose answer is worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from evals.faithfulness import Cited, Shown, ShownList, score_explanations

# Two topics on orthogonal axes; "edge" sits exactly at cosine 0.5 from the space axis
# and "near-miss" just under it (0.49), so the threshold's "at or above" is tested.
VECTORS = {
    "s0": (1.0, 0.0), "s1": (2.0, 0.0), "s2": (0.5, 0.0),
    "k0": (0.0, 1.0), "k1": (0.0, 3.0),
    "edge": (0.5, math.sqrt(0.75)), "near-miss": (0.49, math.sqrt(1 - 0.49**2)),
}
TEXTS = {item: f"text of {item}" for item in VECTORS}


class FakeEmbedder:
    """Looks vectors up by text and records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        by_text = {TEXTS[i]: v for i, v in VECTORS.items()}
        return [list(by_text[t]) for t in texts]


def because(*cited: tuple[str, str | None]) -> tuple[Cited, ...]:
    return tuple(Cited(event_id, item_id) for event_id, item_id in cited)


ALICE = ShownList(user="alice", sent={"a-0": "s0", "a-1": "s1", "a-2": "k0"}, items=[
    Shown("s2", because(("a-0", "s0"), ("a-2", "k0"))),  # faithful
    Shown("k1", because(("a-2", "k0"))),  # faithful
    Shown("edge", because(("a-0", "s0"))),  # faithful: cosine exactly 0.5
    Shown("near-miss", because(("a-0", "s0"))),  # real evidence, 0.49: not related
    Shown("s2", because(("a-7", "s0"))),  # an event the replay never sent
    Shown("s2", because(("a-2", "s1"))),  # a real event id, but about another item
    Shown("k1", because(("a-0", "s0"), ("a-2", "k0"))),  # lead unrelated, second related
    Shown("s2", because()),  # a reason that cites nothing
    Shown("s1", because(("a-0", None))),  # an event without an item: cannot be related
    Shown("k0", None),  # popular fallback
    Shown("s1", None),  # popular fallback
])
# Bob cites Alice's event: it exists, but not in Bob's history.
BOB = ShownList(user="bob", sent={"b-0": "k0"}, items=[Shown("k1", because(("a-2", "k0")))])


def test_counts_match_the_hand_worked_answer() -> None:
    embedder = FakeEmbedder()
    result = score_explanations([ALICE, BOB], TEXTS, embedder, threshold=0.5)
    assert (result.recommended, result.popular, result.explained) == (12, 2, 10)
    # exists: the first four rows and the lead-unrelated one; related: rows 1, 2, 3, the
    # never-sent and the other-item rows (their lead items are on topic), Bob's.
    assert (result.evidence_exists, result.evidence_related, result.faithful) == (5, 6, 3)
    metrics = result.metrics()
    assert metrics == pytest.approx({
        "faithfulness": 3 / 12, "recommended_items": 12, "popular_fallback_share": 2 / 12,
        "faithfulness_explained": 3 / 10, "evidence_exists": 5 / 12,
        "evidence_related": 6 / 12})
    # One batch, each distinct text once.
    assert len(embedder.calls) == 1
    assert sorted(embedder.calls[0]) == sorted(set(embedder.calls[0]))


def test_the_threshold_decides_borderline_items() -> None:
    just_above = score_explanations([ALICE], TEXTS, FakeEmbedder(), threshold=0.501)
    assert just_above.faithful == 2  # the 0.5 item drops out
    lenient = score_explanations([ALICE], TEXTS, FakeEmbedder(), threshold=0.45)
    assert lenient.faithful == 4  # the 0.49 item comes in; invented evidence never does


def test_popular_items_are_never_faithful() -> None:
    popular = ShownList(user="carol", sent={"c-0": "s0"}, items=[Shown("s1", None)])
    metrics = score_explanations([popular], TEXTS, FakeEmbedder()).metrics()
    assert metrics == {"recommended_items": 1.0, "faithfulness": 0.0,
                       "popular_fallback_share": 1.0, "evidence_exists": 0.0,
                       "evidence_related": 0.0}  # nothing explained: no explained share
    assert score_explanations([], TEXTS, FakeEmbedder()).metrics() == {"recommended_items": 0.0}


def test_an_item_the_judge_has_no_text_for_is_not_related() -> None:
    unknown = ShownList(user="dan", sent={"d-0": "s0"},
                        items=[Shown("mystery", because(("d-0", "s0")))])
    result = score_explanations([unknown], TEXTS, FakeEmbedder())
    assert (result.evidence_exists, result.evidence_related, result.faithful) == (1, 0, 0)



def test_faithfulness_by_reason_kind() -> None:
    eve = ShownList(user="eve", sent={"e-0": "s0", "e-1": "k0"}, items=[
        Shown("s2", because(("e-0", "s0")), kind="co_occurrence"),  # faithful
        Shown("k1", because(("e-0", "s0")), kind="co_occurrence"),  # unrelated lead
        Shown("k1", because(("e-1", "k0")), kind="facet"),  # faithful
        Shown("s1", None),  # popular: no kind
    ])
    metrics = score_explanations([eve], TEXTS, FakeEmbedder()).metrics()
    assert metrics["faithfulness"] == pytest.approx(2 / 4)
    assert {k: v for k, v in metrics.items() if k.startswith(("reason_", "faithful_"))} == (
        pytest.approx({"reason_co_occurrence": 2 / 4, "faithful_co_occurrence": 1 / 2,
                       "reason_facet": 1 / 4, "faithful_facet": 1.0}))
