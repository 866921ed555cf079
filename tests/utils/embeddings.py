"""A stand-in for MiniLM in the logic tests: no model to load, the same vectors on every
machine and run, and texts that share words land near each other."""

from __future__ import annotations

import re
from collections.abc import Sequence
from hashlib import blake2b

import numpy as np

WORD = re.compile(r"\w+")


class HashedWordsEmbedder:
    """A bag of words: each word (casefolded) adds one to the dimension its blake2b
    digest picks (not `hash()`, which Python salts per process), and rows are unit
    length, so a dot product is a cosine as with MiniLM.

    Shared words are all it knows: "sci-fi" is not near "science fiction", so tests
    that need meaning use MiniLM (they are marked slow). Two words can share a
    dimension (about one pair in 384); the salt is fixed, so the vectors never change.
    A text with no words gets the empty word's vector: a zero row cannot be normalised.
    """

    name = "hashed-words-384"
    dimensions = 384  # MiniLM's, so anything sized for it fits

    def _dimension(self, word: str) -> int:
        digest = blake2b(word.encode(), digest_size=8, person=b"hashed-words").digest()
        return int.from_bytes(digest, "little") % self.dimensions

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        matrix = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in zip(matrix, texts, strict=True):
            for word in WORD.findall(text.casefold()) or [""]:
                row[self._dimension(word)] += 1.0
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix.tolist()
