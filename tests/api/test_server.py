"""The real thing: the console script, a real uvicorn on loopback, the README's curl block."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from service.datasets.movielens import load_movielens_latest
from service.demo import demo_sessions, rating_events
from tests.utils.servers import free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "service.cli"]
pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    port: int
    workdir: Path
    output: Path


@contextmanager
def running_server(workdir: Path, settings: Mapping[str, str],
                   start_seconds: float = 60) -> Iterator[Server]:
    """`interest-tracker serve` in `workdir`, with only these INTEREST_ settings."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEREST_")}
    env.update({f"INTEREST_{name.upper()}": value for name, value in settings.items()})
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], cwd=workdir, env=env,
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", proc, log, start_seconds, "the service")
        yield Server(url=url, port=port, workdir=workdir, output=log)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # The demo tenant has its own test below; loading it here would take minutes.
    with running_server(tmp_path, {"demo": "false"}) as running:
        yield running


def test_serve_prints_url_and_a_working_dev_key(server: Server) -> None:
    printed = server.output.read_text()
    assert f"http://127.0.0.1:{server.port}" in printed
    match = re.search(r"development API key \(tenant 'dev'\): (\S+)", printed)
    assert match, printed
    key = match.group(1)
    assert (server.workdir / "data" / "dev-api-key").read_text().strip() == key
    assert (server.workdir / "data" / "interest.db").exists()
    r = httpx.get(f"{server.url}/v1/items/x", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "item_not_found"


def test_tenants_create_prints_the_key_last(server: Server) -> None:
    run = subprocess.run([*CLI, "tenants", "create", "shop-eu"], cwd=server.workdir,
                         capture_output=True, text=True, timeout=60, check=True)
    key = run.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.put(f"{server.url}/v1/items", headers=auth, timeout=60,
                  json={"items": [{"item_id": "a", "title": "A"}]})
    assert r.status_code == 200 and r.json()["created"] == 1

    again = subprocess.run([*CLI, "tenants", "create", "shop-eu"], cwd=server.workdir,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = subprocess.run([*CLI, "tenants", "create", "Bad Name"], cwd=server.workdir,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "tenant names" in bad.stderr


def readme_block(marker: str) -> str:
    """The bash block after the README's `<!-- marker: ... -->` comment."""
    text = (ROOT / "README.md").read_text()
    after = text.split(f"<!-- {marker}:", 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def readme_quickstart() -> str:
    return readme_block("quickstart")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_work_as_printed(server: Server) -> None:
    script = readme_quickstart().replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    # Each curl prints one JSON document; put them on separate lines to read them back.
    script = script.replace("curl -s", "echo; curl -s")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=server.workdir,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert len(answers) == 7
    upsert, ingest, item, events, refreshed, profile, deleted = answers
    assert upsert == {"created": 2, "updated": 0, "unchanged": 0, "indexed": 2,
                      "index_pending": 0}
    assert ingest["accepted"] == 2
    assert item["title"] == "Alien" and item["attributes"] == {"year": 1979}
    assert [e["type"] for e in events["events"]] == ["rating", "declared"]
    # The tiny embedded model may fail to write a usable summary (a recorded 502, and
    # no profile yet); tests/summaries/test_embedded_model.py insists on a success.
    if "error" in refreshed:
        assert refreshed["error"]["code"] == "llm_invalid_output", refreshed
        assert profile["version"] == 0 and profile["stale"] is True
    else:
        assert refreshed["version"] == 1 and profile["version"] == 1
        assert [f["facet_id"] for f in profile["facets"]] == [
            f["facet_id"] for f in refreshed["facets"]]
        cited = {e["event_id"] for f in profile["facets"] for e in f["evidence"]}
        assert cited <= {e["event_id"] for e in events["events"]}
        # The declared interest is behind a facet: the model's, or one it seeds itself.
        assert any(e["type"] == "declared" for f in profile["facets"] for e in f["evidence"]), \
            json.dumps(profile, indent=1)[:3000] + "\n" + json.dumps(refreshed)[:100] or \
            profile
    assert deleted == {"user_id": "u1", "events_deleted": 2}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_demo_flow_works_on_a_first_start_and_a_restart_is_instant(
        tmp_path: Path) -> None:
    """The README's demo block against a real server that loaded a small demo on start.

    The scripted `fake` model and a short sequence-model budget keep this quick (the
    profiles' names come from tags); tests/test_demo.py checks the demo's profiles and
    explained recommendations, and the embedded model's answers are tested on their own.
    """
    demo = {"demo_users": "401", "demo_catalog_limit": "100", "llm_backend": "fake",
            "train_sequence_seconds": "5"}
    with running_server(tmp_path, demo, start_seconds=240) as server:
        printed = server.output.read_text()
        assert "demo: loading tenant 'demo' (100 movies" in printed, printed
        match = re.search(r"demo API key \(tenant 'demo'\): (\S+)", printed)
        assert match, printed
        key = match.group(1)
        assert (server.workdir / "data" / "demo-api-key").read_text().strip() == key
        assert (server.workdir / "data" / "demo-api-key").stat().st_mode & 0o777 == 0o600

        # Each JSON answer ends with a newline (curl -w); the list goes to stderr (tee).
        script = readme_block("demo").replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=server.workdir,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        recommendations = json.loads(run.stderr)
        assert len(recommendations["items"]) == 10
        assert all(i["explanation"] for i in recommendations["items"])
        # The demo's other raters trained the tenant's models: the list is the hybrid one.
        assert re.search(r"demo: models \S+ trained in \d+ s", printed), printed
        assert recommendations["source"] == "hybrid", recommendations
        rated = {e["item_id"] for e in httpx.get(
            f"{server.url}/v1/users/ml-401/events", params={"limit": 200},
            headers={"Authorization": f"Bearer {key}"}).json()["events"]}
        assert len(rated) == 72 and not rated & {i["item_id"] for i in recommendations["items"]}
        profile, trace, answer, stream = run.stdout.strip().split("\n", 3)
        # A profile version per replayed session of ml-401's ratings.
        sessions = len(demo_sessions(rating_events(
            "401", [e for e in load_movielens_latest().interactions if e.user == "401"],
            datetime.now(UTC))))
        assert sessions == 3
        assert json.loads(profile)["user_id"] == "ml-401"
        assert json.loads(profile)["version"] == sessions
        assert json.loads(trace)["recommendation_id"] == recommendations["recommendation_id"]
        assert json.loads(answer)["recommendation_id"] == recommendations["recommendation_id"]
        assert stream.startswith("event: token") and "event: done" in stream, stream

    with running_server(tmp_path, demo) as again:
        printed = again.output.read_text()
        assert "demo: loading" not in printed and f"(tenant 'demo'): {key}" in printed, printed
