"""LLMRuntime: backend choice, health, and the bound on calls in flight."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.core.config import Settings
from service.llm.embedded import EMBEDDED_MODEL_NAME, gguf_path
from service.llm.runtime import LLMRuntime


def test_calls_in_flight_are_bounded(tmp_path: Path) -> None:
    runtime = LLMRuntime(Settings(data_dir=tmp_path, llm_backend="fake", llm_max_concurrency=2))
    active, peak = 0, 0
    lock = threading.Lock()

    def call(_: int) -> None:
        nonlocal active, peak
        with runtime.call_slot():
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.05)
            with lock:
                active -= 1

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(call, range(12)))
    assert peak == 2


def test_embedded_backend_is_lazy_and_names_its_model(tmp_path: Path) -> None:
    runtime = LLMRuntime(Settings(data_dir=tmp_path))
    assert runtime.model_name == EMBEDDED_MODEL_NAME
    assert runtime.embedded is not None and not runtime.embedded.started
    assert runtime.health().startswith("idle")
    assert gguf_path().stat().st_size > 50_000_000  # the real weights, from the package


def test_openai_backend_needs_url_and_model(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="INTEREST_LLM_BASE_URL"):
        Settings(data_dir=tmp_path, llm_backend="openai")
    settings = Settings(data_dir=tmp_path, llm_backend="openai",
                        llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    runtime = LLMRuntime(settings)
    assert runtime.model_name == "m" and runtime.base_url == "http://127.0.0.1:9/v1"
    assert runtime.health().startswith("unreachable")


def test_production_refuses_unsafe_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings(data_dir=tmp_path, environment="production", dev_tenant=False)
    with pytest.raises(ValidationError, match="DEV_TENANT"):
        Settings(data_dir=tmp_path, environment="production",
                 database_url="postgresql+psycopg://x@y/z")
