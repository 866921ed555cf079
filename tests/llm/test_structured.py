"""The `response_format` schemas are derived from the pydantic models they describe: the
schema a server constrains its answer with and the model that validates the answer
accept and refuse the same outputs."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from service.llm.structured import response_schema
from service.recommend.explain import explanation_json_schema
from service.summaries.schemas import GroupName, ProfileNarrative


def accepts(schema: dict[str, Any], answer: object) -> bool:
    valid: bool = Draft202012Validator(schema).is_valid(answer)
    return valid


def validates(model: type[BaseModel], answer: object) -> bool:
    try:
        model.model_validate(answer)
    except ValidationError:
        return False
    return True


# Over-long text is left out: the grammar stops it at maxLength, and the model's own
# validators clip what gets through another way (tests/summaries checks the bounds).
NAMING_ANSWERS: list[tuple[object, bool]] = [
    ({"label": "Space exploration", "description": "Watches films about space.",
      "horizon": "long", "noise": False}, True),
    ({"label": "Space exploration", "description": "Watches films about space.",
      "horizon": "long"}, False),  # a grammar that may stop early
    ({"label": "Space exploration", "description": "Watches films about space.",
      "horizon": "long", "noise": False, "polarity": "avoid"}, False),  # not the model's
    ({"label": "Space exploration", "description": "Watches films about space.",
      "horizon": "forever", "noise": False}, False),
    ({"label": "Space exploration", "description": "Watches films about space.",
      "horizon": "short", "noise": "maybe"}, False),
    (["Space exploration"], False),
]

NARRATIVE_ANSWERS: list[tuple[object, bool]] = [
    ({"narrative": "Enjoys space films and home cooking."}, True),
    ({"narrative": "Enjoys space films.", "facets": []}, False),
    ({"narrative": "Hi"}, False),
    ({}, False),
]


@pytest.mark.parametrize(("model", "answers"), [(GroupName, NAMING_ANSWERS),
                                                (ProfileNarrative, NARRATIVE_ANSWERS)])
def test_the_schema_and_its_model_agree_on_what_a_usable_answer_is(
        model: type[BaseModel], answers: list[tuple[object, bool]]) -> None:
    schema = response_schema(model)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(model.model_fields)
    for answer, usable in answers:
        assert accepts(schema, answer) is usable, answer
        assert validates(model, answer) is usable, answer


def hand_written_explanation_schema(evidence_ids: list[str]) -> dict[str, Any]:
    """The schema explain_recommendation sent before it was derived (issue 15)."""
    ids: dict[str, Any] = {"type": "string"}
    if evidence_ids:
        ids["enum"] = evidence_ids
    return {
        "title": "RecommendationExplanation",
        "description": "Why an item was recommended, citing the activity that shows it.",
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "maxLength": 300},
            "evidence": {"type": "array", "items": ids, "minItems": 1,
                         "maxItems": max(len(evidence_ids), 1)},
        },
        "required": ["explanation", "evidence"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize("given", [[], ["e1"], ["e1", "ev-2", "u1:post:3"]])
def test_the_explanation_schema_is_the_request_it_always_was(given: list[str]) -> None:
    assert explanation_json_schema(given) == hand_written_explanation_schema(given)


def test_the_explanation_schema_admits_only_the_evidence_given() -> None:
    given = ["e1", "e2"]
    schema = explanation_json_schema(given)
    fine = {"explanation": "Because you liked Alien.", "evidence": ["e1"]}
    assert accepts(schema, fine)
    for bad in ({"explanation": "Because you liked Alien.", "evidence": ["e9"]},
                {"explanation": "Because you liked Alien.", "evidence": []},
                {"explanation": "Because you liked Alien.", "evidence": ["e1", "e2", "e1"]},
                {"explanation": "x" * 301, "evidence": ["e1"]},
                {"explanation": "Because you liked Alien.", "evidence": ["e1"], "more": 1},
                {"explanation": "Because you liked Alien."}):
        assert not accepts(schema, bad), bad
        assert not accepts(hand_written_explanation_schema(given), bad), bad
