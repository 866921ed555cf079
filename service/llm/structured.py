"""The JSON schemas sent as `response_format`, derived from the pydantic models they
describe (the model's answer is then validated by the same model).

The structured-output backends (vLLM's guided decoding, llama.cpp's grammar) need the
schema closed: every property required, so the grammar cannot stop early, and no
properties beyond the model's. Bounds matter too: without maxLength a small model
repeats itself until it runs out of tokens, so the pydantic fields carry them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema


class _WithoutFieldTitles(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: object) -> bool:
        return False


def response_schema(model: type[BaseModel], *, field_titles: bool = True) -> dict[str, Any]:
    """The pydantic model's own JSON schema, closed.

    `field_titles=False` leaves out the per-property titles pydantic adds ("Label" for
    `label`); the grammar backends ignore them, and a prompt whose schema never sent
    them keeps its request as it was.
    """
    schema = model.model_json_schema(
        schema_generator=GenerateJsonSchema if field_titles else _WithoutFieldTitles)
    schema["required"] = list(schema.get("properties", {}))
    schema["additionalProperties"] = False
    return schema
