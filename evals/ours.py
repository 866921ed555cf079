"""Our service as a `Recommender`: each user's history is replayed through the real code.

`fit` starts the real app in process (SQLite and Chroma in a temp folder, MiniLM
embeddings, the configured LLM) and upserts the catalog through `PUT /v1/items`.
`recommend` replays the user's history through `POST /v1/events`: everything but
the last `replay_last` interactions in one go (nothing when it is None: the whole
history is chunked, as drift tracking needs), then the rest in chunks of
`refresh_every`, with a profile refresh after each chunk at the chunk's own time
(the app's clock follows the replay, so decay happens in data time). The ranking
is `GET /v1/users/{id}/recommendations` (template explanations), exactly what a
client gets; each list is kept with the events sent, so `faithfulness()` can check
the evidence it cites (`evals.faithfulness`).

Variants (ablations):
- `full`: the LLM summarizes, the §4 merge decays and reinforces.
- `no-decay`: the same with half-lives of ~270 years.
- `no-llm`: no model; facets are k-means clusters of the chunk's liked items'
  vectors (label from their commonest genre), merged by the same rules; items rated
  below the threshold form one avoid facet.

Ratings are sent as `rating` events with their value, so a rating below the
threshold reaches the summarizer as a dislike signal (avoid facets).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from evals.faithfulness import (
    DEFAULT_RELATED_THRESHOLD,
    Cited,
    Shown,
    ShownList,
    score_explanations,
)
from evals.types import Interaction, ItemInfo

Variant = Literal["full", "no-decay", "no-llm"]
NO_DECAY_DAYS = 100_000.0


class ReplayClock:
    """The app's clock during a replay: set to each chunk's time."""

    def __init__(self) -> None:
        self.now = datetime(2000, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class OursRecommender:
    def __init__(self, variant: Variant = "full", refresh_every: int = 20,
                 replay_last: int | None = 40, positive_threshold: float = 3.5,
                 settings_overrides: Mapping[str, Any] | None = None, seed: int = 0,
                 llm: Any = None) -> None:
        self.name = "ours" if variant == "full" else f"ours-{variant}"
        self.variant = variant
        self.refresh_every = refresh_every
        self.replay_last = replay_last
        self.positive_threshold = positive_threshold
        self.overrides = dict(settings_overrides or {})
        self.seed = seed
        self.llm = llm  # a shared LLMRuntime (tests); else the app builds one from settings
        self.refreshes = 0
        self.failed_refreshes = 0
        self.prompt_tokens = 0
        self.output_tokens = 0
        self.refresh_seconds = 0.0
        self._client: TestClient | None = None
        self._tmp: str | None = None
        self._auth: dict[str, str] = {}
        self._items: Mapping[str, ItemInfo] = {}
        self._shown: list[ShownList] = []

    # --- lifecycle -------------------------------------------------------------------

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        from service.core.config import Settings
        from service.main import create_app
        from service.tenants.service import create_tenant

        self.close()
        self._tmp = tempfile.mkdtemp(prefix="interest-eval-")
        overrides = dict(self.overrides)
        if self.variant == "no-decay":
            overrides.update(half_life_short_days=NO_DECAY_DAYS, half_life_long_days=NO_DECAY_DAYS)
        settings = Settings(data_dir=Path(self._tmp), refresh_worker=False, **overrides)
        self._clock = ReplayClock()
        app = create_app(settings, llm=self.llm, clock=self._clock)
        self._client = TestClient(app)
        self._client.__enter__()
        with app.state.sessions() as session:
            _, key = create_tenant(session, "eval")
        self._auth = {"Authorization": f"Bearer {key}"}
        self._items = items
        self._shown = []
        rows = [self._item_row(i) for i in sorted(items.values(), key=lambda i: i.item_id)]
        for lo in range(0, len(rows), 1000):
            r = self._client.put("/v1/items", headers=self._auth,
                                 json={"items": rows[lo:lo + 1000]})
            r.raise_for_status()

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __del__(self) -> None:
        self.close()

    @staticmethod
    def _item_row(info: ItemInfo) -> dict[str, Any]:
        return {"item_id": info.item_id, "title": info.title[:500] or info.item_id,
                "category": info.genres[0][:200] if info.genres else None,
                "tags": [t[:100] for t in (*info.genres, *info.tags)][:20],
                **({"description": info.description[:8000]} if info.description else {})}

    # --- replay ------------------------------------------------------------------------

    def _event(self, e: Interaction, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": f"{e.user}-{n}", "user_id": e.user,
                                "item_id": e.item, "ts": _ts(e.ts).isoformat()}
        if e.rating is None:
            body["type"] = "view"
        else:
            body["type"] = "rating"
            body["value"] = max(0.0, min(5.0, float(e.rating)))
        return body

    def _send(self, events: list[dict[str, Any]]) -> None:
        assert self._client is not None
        for lo in range(0, len(events), 1000):
            r = self._client.post("/v1/events", headers=self._auth,
                                  json={"events": events[lo:lo + 1000]})
            r.raise_for_status()

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        assert self._client is not None, "fit first"
        if not history:
            return self._ranking(user, k, exclude, {})
        events = [self._event(e, n) for n, e in enumerate(history)]
        cut = 0 if self.replay_last is None else max(len(events) - self.replay_last, 0)
        if cut:
            self._send(events[:cut])
        for lo in range(cut, len(events), self.refresh_every):
            chunk = events[lo:lo + self.refresh_every]
            self._send(chunk)
            self._clock.now = _ts(history[lo + len(chunk) - 1].ts) + timedelta(seconds=1)
            self._refresh(user, history[lo:lo + len(chunk)], chunk)
        return self._ranking(user, k, exclude, {ev["event_id"]: ev["item_id"] for ev in events})

    def _refresh(self, user: str, interactions: Sequence[Interaction],
                 events: Sequence[dict[str, Any]]) -> None:
        assert self._client is not None
        import time

        started = time.perf_counter()
        if self.variant == "no-llm":
            self._cluster_refresh(user, interactions, events)
        else:
            r = self._client.post(f"/v1/users/{user}/profile/refresh", headers=self._auth)
            if r.status_code != 200:
                # A failed refresh keeps the last good profile: the replay goes on.
                self.failed_refreshes += 1
            else:
                newest = self._client.get(f"/v1/users/{user}/profile/history",
                                          headers=self._auth, params={"limit": 1}).json()
                version = newest["versions"][0]
                self.prompt_tokens += version["prompt_tokens"]
                self.output_tokens += version["output_tokens"]
        self.refreshes += 1
        self.refresh_seconds += time.perf_counter() - started

    def _cluster_refresh(self, user: str, interactions: Sequence[Interaction],
                         events: Sequence[dict[str, Any]]) -> None:
        """The no-LLM ablation: facets from clusters of liked items' vectors."""
        from service.profiles.merge import NewFacet, Polarity
        from service.profiles.service import RefreshInput, commit_merge
        from service.users.models import User

        assert self._client is not None
        app: Any = self._client.app
        liked = [(e, ev) for e, ev in zip(interactions, events, strict=True)
                 if e.rating is None or e.rating >= self.positive_threshold]
        disliked = [(e, ev) for e, ev in zip(interactions, events, strict=True)
                    if e.rating is not None and e.rating < self.positive_threshold - 1]
        new: list[NewFacet] = []
        groups: tuple[tuple[list[tuple[Interaction, dict[str, Any]]], Polarity], ...] = (
            (liked, "like"), (disliked, "avoid"))
        for group, polarity in groups:
            if not group:
                continue
            texts = [self._items[e.item].text if e.item in self._items else e.item
                     for e, _ in group]
            vectors = np.asarray(app.state.embedder.embed(texts), dtype=np.float32)
            n_clusters = 1 if polarity == "avoid" else min(3, len(group))
            labels = _kmeans(vectors, n_clusters, self.seed)
            for c in range(n_clusters):
                members = [i for i, lab in enumerate(labels) if lab == c]
                if not members:
                    continue
                centroid = vectors[members].mean(axis=0)
                centroid /= np.linalg.norm(centroid) or 1.0
                genres = Counter(g for i in members for g in
                                 (self._items[group[i][0].item].genres
                                  if group[i][0].item in self._items else ()))
                topic = genres.most_common(1)[0][0] if genres else "these titles"
                titles = [self._items[group[i][0].item].title for i in members[:3]
                          if group[i][0].item in self._items]
                new.append(NewFacet(
                    label=f"{topic} ({polarity})"[:60],
                    description=("Rated highly: " if polarity == "like" else "Rated low: ")
                    + "; ".join(titles)[:100],
                    strength=min(1.0, len(members) / len(group) + 0.3), polarity=polarity,
                    evidence=tuple(group[i][1]["event_id"] for i in members[-6:]),
                    embedding=tuple(float(x) for x in centroid)))
        with app.state.sessions() as session:
            row = session.scalars(select(User).where(User.user_id == user)).one()
            commit_merge(session, row, app.state.profiles, self._clock(), "eval",
                         RefreshInput(new=new, seen_pending=row.events_since_refresh))

    def _ranking(self, user: str, k: int, exclude: set[str], sent: dict[str, str]) -> list[str]:
        assert self._client is not None
        r = self._client.get(f"/v1/users/{user}/recommendations", headers=self._auth,
                             params={"k": min(k + len(exclude), 100), "explain": "template"})
        if r.status_code == 404:
            return []
        r.raise_for_status()
        shown = [i for i in r.json()["items"] if i["item_id"] not in exclude][:k]
        self._shown.append(ShownList(user=user, sent=sent, items=[Shown(
            item_id=i["item_id"],
            because=None if i["because"] is None else tuple(
                Cited(e["event_id"], e["item_id"]) for e in i["because"]["evidence"]))
            for i in shown]))
        return [i["item_id"] for i in shown]

    def cost(self) -> dict[str, float]:
        n = max(self.refreshes, 1)
        return {"refreshes": float(self.refreshes),
                "failed_refreshes": float(self.failed_refreshes),
                "prompt_tokens_per_refresh": self.prompt_tokens / n,
                "output_tokens_per_refresh": self.output_tokens / n,
                "seconds_per_refresh": self.refresh_seconds / n}

    def decay_rules(self) -> Any:
        """The decay rules the replay's profiles were written with (the forecast reads
        strengths back through them)."""
        from service.core.config import Settings
        from service.profiles.service import rules_from

        overrides = dict(self.overrides)
        if self.variant == "no-decay":
            overrides.update(half_life_short_days=NO_DECAY_DAYS, half_life_long_days=NO_DECAY_DAYS)
        return rules_from(Settings(**overrides))

    def profile_versions(self, user: str) -> list[dict[str, Any]]:
        """Every profile version the replay wrote for this user (GET .../profile/history,
        all pages), newest first; none for a user never replayed."""
        assert self._client is not None, "fit first"
        versions: list[dict[str, Any]] = []
        params: dict[str, int] = {"limit": 200}
        while True:
            r = self._client.get(f"/v1/users/{user}/profile/history", headers=self._auth,
                                 params=params)
            if r.status_code == 404:
                return []
            r.raise_for_status()
            page = r.json()
            versions.extend(page["versions"])
            if page["next_before"] is None:
                return versions
            params["before"] = page["next_before"]

    def faithfulness(self, threshold: float = DEFAULT_RELATED_THRESHOLD) -> dict[str, float]:
        """Explanation faithfulness over every list recommended so far, judged with
        MiniLM whatever embedder the app was configured with (the threshold is
        calibrated for it)."""
        from service.vectors.embeddings import shared_local_embedder

        texts = {item_id: info.text for item_id, info in self._items.items()}
        return score_explanations(self._shown, texts, shared_local_embedder(),
                                  threshold).metrics()


def _kmeans(vectors: np.ndarray, k: int, seed: int, rounds: int = 20) -> list[int]:
    """Plain seeded k-means on unit vectors (cosine), enough for a handful of points."""
    if k <= 1 or len(vectors) <= k:
        return list(range(len(vectors))) if len(vectors) <= k else [0] * len(vectors)
    rng = np.random.default_rng(seed)
    centres = vectors[rng.choice(len(vectors), size=k, replace=False)]
    labels = np.zeros(len(vectors), dtype=int)
    for _ in range(rounds):
        labels = np.argmax(vectors @ centres.T, axis=1)
        for c in range(k):
            members = vectors[labels == c]
            if len(members):
                centre = members.mean(axis=0)
                centres[c] = centre / (np.linalg.norm(centre) or 1.0)
    return [int(x) for x in labels]
