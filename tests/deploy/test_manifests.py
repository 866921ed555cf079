"""The production manifests parse and carry the model-server flags the service relies on.

(No Docker engine or GPU here, so they are not run; this guards their content.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_vllm_has_structured_outputs_prefix_caching_and_context() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "chroma", "vllm", "api"} <= set(services)
    args = " ".join(str(a) for a in services["vllm"]["command"])
    assert "--structured-outputs-config" in args and "--enable-prefix-caching" in args
    max_len = int(args.split("--max-model-len")[1].split()[0])
    assert max_len >= 4096  # a 3,000-token prompt plus a 1,024-token answer
    env = services["api"]["environment"]
    assert env["INTEREST_LLM_BACKEND"] == "openai"
    url = env["INTEREST_LLM_BASE_URL"]
    assert url.startswith("http://vllm:") and url.endswith("/v1")
    assert env["INTEREST_ENVIRONMENT"] == "production" and env["INTEREST_DEV_TENANT"] == "false"


def test_compose_runs_refreshes_in_worker_processes_not_in_the_api() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    api, worker = services["api"], services["worker"]
    assert api["environment"]["INTEREST_REFRESH_WORKER"] == "false"
    assert worker["command"] == ["interest-tracker", "worker"]
    assert worker["image"] == api["image"] and worker["deploy"]["replicas"] >= 2
    # The workers lease jobs from the API's database and reach the same services.
    shared = {k: v for k, v in api["environment"].items() if k != "INTEREST_REFRESH_WORKER"}
    assert worker["environment"] == shared


def test_helm_values_for_production_stack() -> None:
    values: dict[str, Any] = yaml.safe_load(
        (DEPLOY / "helm" / "vllm-production-stack-values.yaml").read_text())
    models = values["servingEngineSpec"]["modelSpec"]
    assert models
    for model in models:
        config = model["vllmConfig"]
        assert config["enablePrefixCaching"] is True and config["maxModelLen"] >= 4096
        assert "--structured-outputs-config" in " ".join(config.get("extraArgs", []))


def test_ray_job_runs_a_batch_refresh_the_cli_accepts() -> None:
    import shlex

    from service.cli import build_parser

    job: dict[str, Any] = yaml.safe_load((DEPLOY / "ray" / "rayjob-refresh.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"].startswith("ray.io/")
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[0] == "interest-tracker"
    args = build_parser().parse_args(words[1:])
    assert args.command == "refresh" and args.all and args.ray == "auto"
    assert args.concurrency and args.concurrency > 0
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    # --ray refuses the embedded Chroma folder: the tasks share a Chroma server.
    assert env["INTEREST_CHROMA_URL"].startswith("http") and env["INTEREST_LLM_BACKEND"] == "openai"
    cluster = job["spec"]["rayClusterSpec"]
    for pod in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        container = pod["template"]["spec"]["containers"][0]
        assert {e["name"] for e in container["env"]} >= {"INTEREST_DATABASE_URL"}
