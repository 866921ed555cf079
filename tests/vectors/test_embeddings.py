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


def test_workers_keep_order_and_vectors(embedder: LocalEmbedder) -> None:
    """Large inputs go to the workers in batches of similar token length; each text
    still gets its own vector, the one a single call gives it."""
    texts = [f"{word} " * (1 + n % 23) + f"film number {n}" for n, word in
             enumerate(["jazz", "space", "war", "love", "heist"] * 8)]
    pooled = LocalEmbedder(batch_size=4, workers=2)
    alone = LocalEmbedder(workers=1)
    got = pooled.embed(texts)
    want = alone.embed(texts)  # torch, one call
    assert pooled.worker_runtime == "onnxruntime"
    assert len(got) == len(texts)
    assert max(abs(a - b) for g, w in zip(got, want, strict=True)
               for a, b in zip(g, w, strict=True)) < 1e-5


def test_token_lengths_match_the_model(embedder: LocalEmbedder) -> None:
    texts = ["jazz", "a somewhat longer sentence about bebop records", "word " * 400]
    model = embedder._load()
    want = model.tokenize(texts)["attention_mask"].sum(dim=1).tolist()  # type: ignore[attr-defined]
    assert embedder.token_lengths(texts) == want
    assert want[2] == model.max_seq_length  # type: ignore[attr-defined]  # truncated
