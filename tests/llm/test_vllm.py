"""The summarizer through ChatOpenAI against a real vLLM server on loopback.

deploy/vllm/setup.sh builds (once, cached in ~/.cache/interest-tracker/vllm) a
CPU-only vLLM and converts the shipped GGUF to a Hugging Face folder; this module
starts the server, runs the real summarizer against it, and stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings
from service.llm.runtime import LLMRuntime
from service.summaries.schemas import InterestSummary
from tests.utils.api import activity_for, app_client, make_tenant
from tests.utils.servers import free_port, wait_until_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
SERVED_NAME = "smollm2"


def vllm_command(python: str, model_dir: str, port: int) -> list[str]:
    return [
        python, "-m", "vllm.entrypoints.launchers.api_server.entry",
        "--model", model_dir, "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "4096",
        # On CPU the KV cache is sized from RAM; without this vLLM asks for 92% of it.
        "--kv-cache-memory-bytes", "512M",
        "--enable-prefix-caching",
        "--structured-outputs-config", '{"backend":"xgrammar","disable_any_whitespace":true}',
        "--uvicorn-log-level", "warning",
    ]


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    setup = subprocess.run([str(ROOT / "deploy" / "vllm" / "setup.sh")], capture_output=True,
                           text=True, timeout=1500)
    assert setup.returncode == 0, setup.stderr[-3000:]
    paths = dict(line.split("=", 1) for line in setup.stdout.split())
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {
        **os.environ,
        # One OpenMP thread on core 0: measured 3-4x faster than two threads on two
        # cores here, as the server's other processes need the second core.
        "VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(vllm_command(paths["VLLM_PYTHON"], paths["VLLM_MODEL_DIR"], port),
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_ready(f"{url}/models", proc, log, 300, "vLLM")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_summarizer_through_chatopenai_against_real_vllm(tmp_path: Path, vllm_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_backend="openai",
                        llm_base_url=vllm_url, llm_model=SERVED_NAME, llm_max_retries=0)
    runtime = LLMRuntime(settings)
    with app_client(settings, runtime) as client:
        t = make_tenant(client, "acme")
        events = activity_for(t)
        assert client.get("/readyz").json()["checks"]["llm"] == "ok"
        r = t.post("/v1/users/u1/summaries")
        assert r.status_code == 201, r.text
        run: dict[str, Any] = r.json()
    summary = InterestSummary.model_validate(run["summary"])
    real_ids = {e["event_id"] for e in events}
    for facet in summary.facets:
        assert facet.evidence and set(facet.evidence) <= real_ids
    assert run["model"] == SERVED_NAME
    assert run["prompt_tokens"] > 100 and run["output_tokens"] > 0
