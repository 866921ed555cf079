"""Recommendation latency: the real app in process (SQLite, real MiniLM embeddings,
Chroma in a folder), a 100,000-item synthetic catalog, a crowd's activity, the tenant's
trained models with the learned ranker, and a stored ~10-facet profile.

1. Catalog: `--items` synthetic items (30 topics, six kinds, titles and descriptions
   drawn from each topic's vocabulary) through `PUT /v1/items` in batches of 1,000,
   so every item is embedded and indexed by the service itself. This takes minutes
   on 2 cores; pass `--data-dir` to keep the built catalog and reuse it next time.
2. Profile: a user with `--facets` facets (one of them an avoid-facet), each backed
   by `--evidence` events on items of its topic, plus `--noise` other events; the
   profile is written by the real merge path (no LLM).
3. Models: `--crowd` synthetic users, each liking `--crowd-events` items of one or two
   topics (popular items of a topic more often), then the tenant's models trained on
   that activity as `interest-tracker train` does (co-occurrence, transitions, the
   sequence model with a `--sequence-seconds` budget, TF-IDF, popularity, and the
   LightGBM ranker over the items' real vectors), saved as the tenant's artifact.
4. `GET /v1/users/fan/recommendations?k=10` (template explanations) `--requests` times
   after a warm-up, over HTTP: the same app behind uvicorn on a loopback port (one
   keep-alive connection), as `interest-tracker serve` runs it; then `--requests` more
   through the in-process ASGI test client, which runs before session 39 timed
   (`in_process_p50_ms`, `in_process_p99_ms`). The embedded LLM is started first (unless
   `--no-llm`) so the RSS figure is the service with its models loaded. The list is
   `hybrid`, scored by the ranker. The facets' nearest items, evidence and centroids are
   kept between requests under the catalog token (`candidates.NEIGHBOUR_CACHE`,
   `evidence_with_items`, `evidence_centroid`), the user's history under a stamp of their
   events (`user_history`), and the trained sources' candidates for an unchanged history
   with the loaded models (`TrainedModels.candidates`), as between any two events of a
   user; the first request after a new event, a refresh or a catalog change computes them,
   and `cold_p50_ms` / `cold_p99_ms` time that case (`--cold-requests`, all of them
   forgotten before each: `candidates.forget_kept` and `forget_personal`; the tenant-wide
   catalog rows and item vectors stay kept, as they do after a user's new event or
   refresh). Outside the target, a few requests with a category filter and a few for a user
   without a profile or history (the popular fallback) are timed too.

Prints progress lines, then one JSON object on the last line:
{"p50_ms": ..., "p99_ms": ..., "rss_mb": ..., "peak_rss_mb": ..., "in_process_p50_ms": ...,
"cpu_ms_per_request": ...}
(p50 and p99 over HTTP). `rss_mb` is the process's
resident size once the timed requests are done (the service serving, its models and the
embedded LLM loaded); `peak_rss_mb` the highest it ever was, which includes building the
catalog and training when this run did them (reuse a `--data-dir` to time serving alone).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python benchmarks/recommend.py`, this folder comes first on sys.path, and
# benchmarks/profile.py then shadows the standard `profile` module (cProfile imports
# it, torch imports cProfile, the embedder imports torch). Drop the folder first; the
# repository root is what the imports need (`tests.utils` too), as in benchmarks/load.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != _HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from service.catalog.models import Item  # noqa: E402
from service.core.config import Settings  # noqa: E402
from service.main import create_app  # noqa: E402
from service.profiles.merge import NewFacet  # noqa: E402
from service.profiles.store import RefreshInput, commit_merge  # noqa: E402
from service.tenants.service import add_api_key, create_tenant, tenant_by_name  # noqa: E402
from service.users.models import User  # noqa: E402
from tests.utils.servers import free_port  # noqa: E402

USER = "fan"  # the user whose lists are timed
KINDS = ["book", "film", "course", "podcast", "recipe", "game"]

# topic: (words for titles and descriptions, settings, facet label)
TOPICS: dict[str, tuple[list[str], list[str], str]] = {
    "space": (["starship", "nebula", "orbit", "comet", "astronaut", "galaxy", "moon base"],
              ["deep space", "a dying star", "the outer rim"], "Space exploration"),
    "cooking": (["sourdough", "broth", "knife skills", "spice", "noodles", "fermentation"],
                ["a home kitchen", "a night market", "a family restaurant"], "Home cooking"),
    "romance": (["love letter", "wedding", "first date", "heartbreak", "summer romance"],
                ["Paris", "a seaside town", "a busy office"], "Romantic stories"),
    "history": (["empire", "revolution", "dynasty", "archive", "battle", "treaty"],
                ["ancient Rome", "medieval Europe", "the Ming court"], "World history"),
    "gardening": (["tomatoes", "compost", "seedlings", "roses", "raised beds", "pruning"],
                  ["a balcony", "an allotment", "a greenhouse"], "Gardening"),
    "jazz": (["saxophone", "bebop", "trumpet", "swing", "improvisation", "big band"],
             ["a smoky club", "New Orleans", "a late-night session"], "Jazz music"),
    "hiking": (["trail", "summit", "backpack", "ridge", "alpine hut", "waterfall"],
               ["the Alps", "a national park", "the Highlands"], "Hiking and trails"),
    "finance": (["index funds", "budget", "mortgage", "dividends", "retirement", "taxes"],
                ["a first job", "a small business", "early retirement"], "Personal finance"),
    "crime": (["detective", "heist", "alibi", "interrogation", "cold case", "smuggler"],
              ["a rainy city", "a country house", "the docks"], "Crime and mystery"),
    "fitness": (["kettlebell", "marathon", "stretching", "squats", "interval training"],
                ["a home gym", "the park", "a boxing club"], "Fitness training"),
    "photography": (["aperture", "portrait", "darkroom", "lens", "street photo", "tripod"],
                    ["golden hour", "a city at night", "a studio"], "Photography"),
    "chess": (["opening", "endgame", "gambit", "grandmaster", "tactics", "blitz"],
              ["a tournament hall", "an online ladder", "a park bench"], "Chess"),
    "birds": (["warbler", "migration", "owl", "binoculars", "nesting", "heron"],
              ["a wetland", "a city park", "the coast"], "Birdwatching"),
    "programming": (["compiler", "database", "algorithm", "debugging", "web server"],
                    ["a startup", "an open-source project", "a hackathon"], "Programming"),
    "horror": (["haunted house", "ghost", "curse", "zombie", "cellar", "possession"],
               ["a remote cabin", "an abandoned asylum", "a foggy village"], "Horror"),
    "wine": (["vineyard", "tasting", "grapes", "cellar master", "harvest", "oak barrel"],
             ["Bordeaux", "a hillside estate", "a wine bar"], "Wine"),
    "football": (["striker", "derby", "transfer", "penalty", "league title", "coach"],
                 ["a packed stadium", "a small-town club", "the cup final"], "Football"),
    "painting": (["watercolour", "oil paint", "canvas", "brushwork", "portrait", "palette"],
                 ["a sunlit studio", "a museum", "a plein-air field"], "Painting"),
    "sailing": (["sailboat", "regatta", "knots", "trade winds", "harbour", "navigation"],
                ["the Atlantic", "a quiet bay", "the Greek islands"], "Sailing"),
    "parenting": (["toddler", "bedtime", "school run", "tantrum", "homework", "siblings"],
                  ["a busy household", "the first year", "the teenage years"], "Parenting"),
    "robotics": (["robot arm", "sensor", "servo", "drone", "autonomy", "microcontroller"],
                 ["a makerspace", "a factory floor", "a lab"], "Robotics"),
    "coffee": (["espresso", "roast", "pour-over", "barista", "grinder", "latte art"],
               ["a corner cafe", "a roastery", "a morning routine"], "Coffee"),
    "mythology": (["gods", "hero", "oracle", "underworld", "trickster", "titan"],
                  ["Olympus", "the Norse realms", "ancient Egypt"], "Mythology"),
    "climate": (["carbon", "glacier", "heatwave", "renewables", "sea level", "drought"],
                ["the Arctic", "a coastal city", "a farming region"], "Climate change"),
    "architecture": (["cathedral", "skyscraper", "facade", "concrete", "floor plan"],
                     ["a modern city", "a historic quarter", "a village"], "Architecture"),
    "knitting": (["yarn", "sweater", "stitch pattern", "wool", "cable knit", "scarf"],
                 ["a cosy evening", "a craft fair", "a winter cabin"], "Knitting"),
    "cycling": (["road bike", "peloton", "climb", "gravel", "sprint", "tour stage"],
                ["the mountains", "a city commute", "a coastal road"], "Cycling"),
    "astronomy": (["telescope", "planets", "eclipse", "star chart", "meteor shower"],
                  ["a dark-sky park", "a backyard", "an observatory"], "Stargazing"),
    "language": (["grammar", "vocabulary", "accent", "phrasebook", "fluency", "idioms"],
                 ["a year abroad", "evening classes", "a language exchange"],
                 "Learning languages"),
    "comedy": (["stand-up", "sketch", "sitcom", "punchline", "improv", "satire"],
               ["a comedy club", "a late show", "a touring festival"], "Comedy"),
}
ADJECTIVES = ["Lost", "Quiet", "Bright", "Hidden", "Last", "Wild", "Golden", "Broken",
              "Secret", "Little", "Endless", "Northern", "Silver", "Modern", "Forgotten"]
OPENINGS = ["A guide to", "The story of", "An introduction to", "Notes on", "A season of",
            "Everything about", "A beginner's look at", "Masterclass:"]


def synthetic_items(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = sorted(TOPICS)
    items = []
    for i in range(n):
        topic = names[i % len(names)]
        words, places, _ = TOPICS[topic]
        a, b = rng.sample(words, 2)
        kind = KINDS[(i // len(names) + rng.randrange(len(KINDS))) % len(KINDS)]
        title = rng.choice([f"The {rng.choice(ADJECTIVES)} {a.title()}",
                            f"{a.title()} and {b.title()}",
                            f"{rng.choice(OPENINGS)} {a}",
                            f"{a.title()} in {rng.choice(places)}"])
        items.append({
            "item_id": f"i{i}", "title": f"{title} #{i}", "category": kind,
            "tags": [topic, a, b][: rng.randint(1, 3)],
            "description": (f"{rng.choice(OPENINGS)} {a} and {b}, set in {rng.choice(places)}; "
                            f"a {kind} about {topic} for curious people."),
        })
    return items


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of the values, as numpy computes it (linear interpolation)."""
    return float(np.quantile(values, q))


def build_catalog(client: TestClient, auth: dict[str, str], items: list[dict[str, Any]]) -> None:
    started = time.perf_counter()
    for lo in range(0, len(items), 1000):
        r = client.put("/v1/items", headers=auth, json={"items": items[lo:lo + 1000]})
        r.raise_for_status()
        assert r.json()["index_pending"] == 0, r.text
        done = lo + len(items[lo:lo + 1000])
        rate = done / (time.perf_counter() - started)
        print(f"indexed {done}/{len(items)} items ({rate:.0f}/s)", flush=True)


def build_profile(app: Any, client: TestClient, auth: dict[str, str],
                  items: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Facets on the first `--facets` topics, each citing events on its own items (items
    the crowd uses too, so every trained source has something to say about them)."""
    rng = random.Random(args.seed + 1)
    names = sorted(TOPICS)[: args.facets]
    now = datetime.now(UTC)
    by_topic = {t: [i for i in items if i["tags"][0] == t] for t in sorted(TOPICS)}
    head = [i for t in sorted(TOPICS) for i in by_topic[t][: args.topic_head]]
    events = []
    for f, topic in enumerate(names):
        for n, it in enumerate(rng.sample(by_topic[topic][: args.topic_head], args.evidence)):
            events.append({"event_id": f"{USER}-f{f}-e{n}", "user_id": USER, "type": "like",
                           "item_id": it["item_id"],
                           "ts": (now - timedelta(hours=f * args.evidence + n + 1)).isoformat()})
    for n, it in enumerate(rng.sample(head, args.noise)):
        events.append({"event_id": f"{USER}-noise{n}", "user_id": USER, "type": "view",
                       "item_id": it["item_id"], "ts": (now - timedelta(days=3, minutes=n))
                       .isoformat()})
    for lo in range(0, len(events), 1000):
        client.post("/v1/events", headers=auth,
                    json={"events": events[lo:lo + 1000]}).raise_for_status()
    labels = [TOPICS[t][2] for t in names]
    descriptions = [f"Keeps coming back to {TOPICS[t][0][0]}, {TOPICS[t][0][1]} and "
                    f"{TOPICS[t][0][2]}." for t in names]
    box = app.state.container
    vectors = box.embedder.embed([f"{lab}. {d}" for lab, d in zip(labels, descriptions,
                                                                  strict=True)])
    new = [NewFacet(label=lab, description=d, strength=1.0 - 0.05 * f,
                    polarity="avoid" if f == len(names) - 1 else "like",
                    evidence=tuple(f"{USER}-f{f}-e{n}" for n in range(args.evidence)),
                    embedding=tuple(vec))
           for f, (lab, d, vec) in enumerate(zip(labels, descriptions, vectors, strict=True))]
    with app.state.container.sessions() as session:
        user = session.scalars(select(User).where(User.user_id == USER)).one()
        commit_merge(session, user, box.profiles.rules, now, "refresh", RefreshInput(new=new))
    print(f"profile: {len(new)} facets ({sum(f.polarity == 'avoid' for f in new)} avoid), "
          f"{len(events)} events")


def build_crowd(client: TestClient, auth: dict[str, str], items: list[dict[str, Any]],
                args: argparse.Namespace) -> None:
    """Users who each like items of one or two topics, the topic's head more often."""
    rng = random.Random(args.seed + 2)
    names = sorted(TOPICS)
    by_topic = {t: [i["item_id"] for i in items if i["tags"][0] == t] for t in names}
    head = {t: ids[: args.topic_head] for t, ids in by_topic.items()}
    weights = [1.0 / (n + 1) ** 0.8 for n in range(args.topic_head)]
    now = datetime.now(UTC)
    events = []
    for u in range(args.crowd):
        topics = rng.sample(names, rng.choice([1, 2]))
        picked: list[str] = []
        while len(picked) < args.crowd_events:
            topic = rng.choice(topics)
            pool = head[topic]
            item_id = rng.choices(pool, weights[: len(pool)])[0]
            if item_id not in picked:
                picked.append(item_id)
        start = now - timedelta(days=rng.uniform(5, 60))
        for n, item_id in enumerate(picked):
            kind, value = rng.choice([("like", None), ("view", None), ("rating", 4.5),
                                      ("rating", 2.0)])
            body: dict[str, Any] = {
                "event_id": f"c{u}-{n}", "user_id": f"c{u}", "type": kind, "item_id": item_id,
                "ts": (start + timedelta(hours=6 * n)).isoformat()}
            if value is not None:
                body["value"] = value
            events.append(body)
    for lo in range(0, len(events), 1000):
        client.post("/v1/events", headers=auth,
                    json={"events": events[lo:lo + 1000]}).raise_for_status()
    print(f"crowd: {args.crowd} users, {len(events)} events")


def train(app: Any, tenant_id: int, args: argparse.Namespace) -> dict[str, Any]:
    """The tenant's models and ranker, trained and saved as its current artifact."""
    from service.training.contract import ModelMeta
    from service.training.data import item_texts_from_database, log_from_database
    from service.training.ranker import train_ranker
    from service.training.service import train_log
    from service.training.store import ArtifactStore, models_root, new_version

    started = time.perf_counter()
    settings = app.state.container.settings
    with app.state.container.sessions() as session:
        log = log_from_database(session, tenant_id, settings.rating_max)
        texts = item_texts_from_database(session, tenant_id)
        versions = {i: h or "" for i, h in session.execute(
            select(Item.item_id, Item.indexed_hash).where(
                Item.tenant_id == tenant_id, Item.item_id.in_(sorted(set(log.item_ids)))))}
    vectors = app.state.container.vectors.vectors(tenant_id, "items", versions)
    trained = train_log(log, texts, sequence_seconds=args.sequence_seconds, progress=True,
                        ranker_trainer=partial(train_ranker, item_vectors=vectors,
                                               workers=settings.train_workers))
    meta = ModelMeta(version=new_version(), tenant_id=tenant_id,
                     trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
                     events_used=len(log), users=len(log.user_ids),
                     items=len(trained.models.item_ids), sources=list(trained.models.sources),
                     ranker=trained.ranker is not None, heldout=trained.heldout,
                     notes=trained.notes, seconds=round(time.perf_counter() - started, 1))
    ArtifactStore(models_root(settings)).save(meta, trained.models, trained.ranker)
    print(f"trained {meta.version} in {meta.seconds} s: sources {meta.sources}, "
          f"ranker {meta.ranker}; notes {meta.notes}")
    ranker_figures = {k: round(v, 4) for k, v in meta.heldout.items()
                      if k.startswith("ranker") and "baseline" not in k}
    print(f"ranker validation: {ranker_figures}")
    return {"train_seconds": meta.seconds, **{f"heldout_{k}": v
                                             for k, v in ranker_figures.items()}}


def run(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, refresh_worker=False,
                        llm_backend="fake" if args.no_llm else "embedded")
    app = create_app(settings)
    with TestClient(app) as client:
        with app.state.container.sessions() as session:
            tenant = tenant_by_name(session, "bench")
            if tenant is None:
                tenant, key = create_tenant(session, "bench")
            else:
                key = add_api_key(session, tenant)
                session.commit()
            built = session.scalar(select(func.count()).select_from(Item)
                                   .where(Item.tenant_id == tenant.id)) or 0
            has_user = session.scalar(select(User.id).where(User.user_id == USER)) is not None
            has_crowd = session.scalar(select(User.id).where(User.user_id == "c0")) is not None
            has_newcomer = session.scalar(
                select(User.id).where(User.user_id == "newcomer")) is not None
        auth = {"Authorization": f"Bearer {key}"}
        items = synthetic_items(args.items, args.seed)
        app.state.container.embedder.embed(["warm-up"])  # model load is not indexing
        if built < len(items):
            build_catalog(client, auth, items)
        else:
            print(f"reusing the {built}-item catalog in {data_dir}")
        if not has_crowd:
            build_crowd(client, auth, items, args)
        if not has_user:
            build_profile(app, client, auth, items, args)
        from service.training.store import ArtifactStore, models_root

        trained: dict[str, Any] = {}
        if args.retrain or ArtifactStore(models_root(settings)).current_version(
                tenant.id) is None:
            trained = train(app, tenant.id, args)
        if not args.no_llm:
            started = time.perf_counter()
            app.state.container.llm.base_url  # noqa: B018 - starts the embedded model server
            print(f"embedded LLM started in {time.perf_counter() - started:.1f} s")

        if args.torch_threads is not None:
            import torch

            torch.set_num_threads(args.torch_threads)
        url = f"/v1/users/{USER}/recommendations"
        for _ in range(args.warmup):
            client.get(url, headers=auth, params={"k": 10}).raise_for_status()
        # The target's figure: the same app behind a real HTTP server (uvicorn on loopback,
        # one keep-alive connection), as `interest-tracker serve` runs it; then the same
        # requests through the in-process ASGI client, which earlier runs reported (a bare
        # route took 2.6 ms through it, 0.7 ms through uvicorn, on session 39's machine).
        with served(app) as http:
            latencies, cpu_ms = timed_gets(http, url, auth, args.requests)
        in_process, in_process_cpu_ms = timed_gets(client, url, auth, args.requests)
        r = client.get(url, headers=auth, params={"k": 10})
        r.raise_for_status()
        body = r.json()
        # Beside the target: the first request after a new event or a refresh, whose
        # facets' neighbours and evidence (`candidates.forget_kept`) and personal model
        # candidates (`TrainedModels.candidates`) are not kept yet.
        from service.recommend.candidates import forget_kept

        loaded = app.state.container.profiles.models.get(tenant.id)
        cold = []
        for _ in range(args.cold_requests):
            forget_kept()
            loaded.forget_personal()
            t0 = time.perf_counter()
            client.get(url, headers=auth, params={"k": 10}).raise_for_status()
            cold.append((time.perf_counter() - t0) * 1e3)
        # Not part of the target: a category filter (one kind in six).
        by_category = []
        for _ in range(args.category_requests):
            t0 = time.perf_counter()
            client.get(url, headers=auth, params={"k": 10, "category": "book"}).raise_for_status()
            by_category.append((time.perf_counter() - t0) * 1e3)
        # Not part of the target either: a user without a profile (the popular fallback).
        if not has_newcomer:
            client.post("/v1/events", headers=auth, json={"events": [{
                "event_id": "newcomer-search", "user_id": "newcomer", "type": "search",
                "text": "something new", "ts": datetime.now(UTC).isoformat()}]},
            ).raise_for_status()
        popular = []
        for _ in range(args.popular_requests):
            t0 = time.perf_counter()
            r_popular = client.get("/v1/users/newcomer/recommendations", headers=auth,
                                   params={"k": 10})
            popular.append((time.perf_counter() - t0) * 1e3)
            r_popular.raise_for_status()
        assert body["source"] == "hybrid" and len(body["items"]) == 10, body
        assert all(i["because"]["evidence"] for i in body["items"] if i["because"])
        kinds = sorted({i["because"]["kind"] for i in body["items"] if i["because"]})
        trace = client.get(f"/v1/recommendations/{body['recommendation_id']}", headers=auth)
        trace.raise_for_status()
        stored = trace.json()
        assert stored["parameters"]["scoring"] == "ranker", stored["parameters"]
        candidates = len(stored["candidates"]) + stored["excluded"].get("not_traced", 0)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rss_mb = resident_mb()
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"GET recommendations x{args.requests} over HTTP: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"RSS {rss_mb:.0f} MB (peak {peak_rss_mb:.0f} MB); {candidates} candidates, "
          f"reasons {kinds}")
    print(f"the same in process (ASGI test client): p50 {percentile(in_process, 0.5):.2f} ms, "
          f"p99 {percentile(in_process, 0.99):.2f} ms; CPU per request {cpu_ms:.2f} ms over "
          f"HTTP, {in_process_cpu_ms:.2f} ms in process")
    if cold:
        print(f"nothing kept yet x{len(cold)}: p50 {percentile(cold, 0.5):.2f} ms, "
              f"p99 {percentile(cold, 0.99):.2f} ms")
    if by_category:
        print(f"with category=book x{len(by_category)}: p50 {percentile(by_category, 0.5):.2f}"
              f" ms, p99 {percentile(by_category, 0.99):.2f} ms")
    if popular:
        print(f"popular fallback x{len(popular)}: p50 {percentile(popular, 0.5):.2f} ms, "
              f"p99 {percentile(popular, 0.99):.2f} ms (the first counts the tiers)")
    print(f"example: {body['items'][0]['title']!r}: {body['items'][0]['explanation']}")
    return {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "rss_mb": round(rss_mb, 1),
            "peak_rss_mb": round(peak_rss_mb, 1), "catalog_reused": built >= len(items),
            "items": args.items, "facets": args.facets, "k": 10, "requests": args.requests,
            "candidates": candidates, "llm_loaded": not args.no_llm, "database": "sqlite",
            "scoring": "ranker", "reasons": kinds, "torch_threads": args.torch_threads,
            # Whether the ranker's compiled trees scored (`training/compiled.py`), or LightGBM.
            "ranker_runtime": ("compiled" if getattr(loaded.ranker, "compiled", None)
                               else "lightgbm"),
            **trained,
            "cold_p50_ms": round(percentile(cold, 0.5), 2) if cold else None,
            "cold_p99_ms": round(percentile(cold, 0.99), 2) if cold else None,
            "category_p50_ms": round(percentile(by_category, 0.5), 2) if by_category else None,
            "category_p99_ms": round(percentile(by_category, 0.99), 2) if by_category else None,
            "popular_p50_ms": round(percentile(popular, 0.5), 2) if popular else None,
            "popular_p99_ms": round(percentile(popular, 0.99), 2) if popular else None,
            "transport": "uvicorn on loopback, one keep-alive connection",
            "in_process_p50_ms": round(percentile(in_process, 0.5), 2),
            "in_process_p99_ms": round(percentile(in_process, 0.99), 2),
            "cpu_ms_per_request": round(cpu_ms, 2),
            "in_process_cpu_ms_per_request": round(in_process_cpu_ms, 2)}


@contextmanager
def served(app: Any) -> Iterator[httpx.Client]:
    """`app` behind uvicorn on a free loopback port, in a thread of this process, without
    running its lifespan again (the test client's already opened the container); a client
    holding one keep-alive connection to it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def timed_gets(client: Any, url: str, auth: dict[str, str], n: int
               ) -> tuple[list[float], float]:
    """`n` list requests (after a few untimed ones): each one's milliseconds, and the
    process's CPU milliseconds per request over them (every thread: client, server and
    the models' pool). The wall times include any wait for a core; the CPU time does
    not, though both move with the host's speed (on session 42's shared machine the two
    were within a few percent of each other, and each moved ~20% from run to run)."""
    for _ in range(5):
        client.get(url, headers=auth, params={"k": 10}).raise_for_status()
    out = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, headers=auth, params={"k": 10})
        out.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
    return out, (time.process_time() - cpu0) * 1e3 / max(n, 1)


def resident_mb() -> float:
    """The process's resident set size now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--facets", type=int, default=10)
    parser.add_argument("--evidence", type=int, default=20)
    parser.add_argument("--noise", type=int, default=300)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--cold-requests", type=int, default=50,
                        help="requests timed with the facets' neighbours forgotten first")
    parser.add_argument("--category-requests", type=int, default=50)
    parser.add_argument("--popular-requests", type=int, default=50)
    parser.add_argument("--crowd", type=int, default=3000)
    parser.add_argument("--crowd-events", type=int, default=20)
    parser.add_argument("--topic-head", type=int, default=400,
                        help="the crowd likes these first items of each topic")
    parser.add_argument("--sequence-seconds", type=float, default=30.0)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="set torch's intra-op threads before timing (default: torch's)")
    parser.add_argument("--retrain", action="store_true",
                        help="train a new artifact even when a reused data dir has one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the catalog here and reuse it on the next run")
    parser.add_argument("--no-llm", action="store_true",
                        help="do not start the embedded model (RSS without it)")
    args = parser.parse_args()
    if args.data_dir is not None:
        result = run(args.data_dir, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Path(tmp), args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
