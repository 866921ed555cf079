"""Real embeddings from the packaged all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import math

import pytest

from service.profiles.merge import cosine
from service.vectors.embeddings import LocalEmbedder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_vectors_are_unit_length_and_semantic(embedder: LocalEmbedder) -> None:
    jazz, bebop, hiking = embedder.embed(
        ["jazz music and saxophone", "bebop records from the fifties", "mountain hiking trails"])
    assert len(jazz) == embedder.dimensions == 384
    assert math.isclose(math.sqrt(sum(x * x for x in jazz)), 1.0, rel_tol=1e-4)
    assert cosine(jazz, bebop) > cosine(jazz, hiking) + 0.1


def test_same_text_same_vector_and_empty_input(embedder: LocalEmbedder) -> None:
    a, b = embedder.embed(["science fiction films", "science fiction films"])
    assert cosine(a, b) > 0.9999  # batched CPU maths differs in the last digits
    assert embedder.embed([]) == []
