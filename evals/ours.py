"""Our service as a `Recommender`: each user's history is replayed through the real code.

`fit` starts the real app in process (SQLite and Chroma in a temp folder, MiniLM
embeddings, the configured LLM), upserts the catalog through `PUT /v1/items`, sends
every user's training events but the last `replay_last` through `POST /v1/events`
(none when `replay_last` is None), and trains the tenant's models (co-occurrence,
transitions, SASRec, TF-IDF, popularity and the LightGBM ranker) on the training
interactions, exactly as `interest-tracker train` does and on the same data every
baseline fits on. `recommend` replays the user's remaining events in chunks of
`refresh_every`, with a profile refresh after each chunk at the chunk's own time (the
app's clock follows the replay, so decay happens in data time). The ranking is
`GET /v1/users/{id}/recommendations` (template explanations), exactly what a client
gets; each list is kept with the events sent, so `faithfulness()` can check the
evidence it cites (`evals.faithfulness`).

Variants (ablations):
- `full` (`ours`): the hybrid of DESIGN.md §2: facets (grouped events named by the LLM)
  as candidates and ranker features beside the trained models.
- `no-decay`: the same with half-lives of ~270 years and no displacement.
- `no-llm`: the trained models and ranker only: no profile, no facet candidates or
  features (its ranker is trained without facet features too).
- `facets-only`: the profile-only path (facet retrieval from Chroma, popular fill), no
  trained models.
- `template-names`: as `full`, but the model names no group (names from tags only).

Ratings are sent as `rating` events with their value, so a low rating reaches the
grouping as a dislike (avoid facets).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi.testclient import TestClient

from evals.faithfulness import (
    DEFAULT_RELATED_THRESHOLD,
    Cited,
    Shown,
    ShownList,
    score_explanations,
)
from evals.types import Interaction, ItemInfo

Variant = Literal["full", "no-decay", "no-llm", "facets-only", "template-names"]
NO_DECAY_DAYS = 100_000.0
# Variants whose tenant models (co-occurrence, transitions, SASRec, TF-IDF, popularity and
# the learned ranker) are trained at `fit`, on the same training interactions as every
# baseline. `facets-only` is the profile-only path of before (facet retrieval, popular
# fill); `no-llm` has models and ranker but no profile at all (no facet candidates or
# features, and its ranker is trained without facet features).
TRAINED: frozenset[Variant] = frozenset({"full", "no-decay", "no-llm", "template-names"})
REFRESHED: frozenset[Variant] = frozenset({"full", "no-decay", "facets-only", "template-names"})


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
                 llm: Any = None, sequence_seconds: float = 45.0,
                 sequence_epochs: int | None = None) -> None:
        self.name = "ours" if variant == "full" else f"ours-{variant}"
        self.variant = variant
        self.refresh_every = refresh_every
        self.replay_last = replay_last
        self.positive_threshold = positive_threshold
        self.overrides = dict(settings_overrides or {})
        self.seed = seed
        self.llm = llm  # a shared LLMRuntime (tests); else the app builds one from settings
        self.sequence_seconds = sequence_seconds
        self.sequence_epochs = sequence_epochs  # set: trained that long whatever the time
        self.models_meta: dict[str, Any] = {}
        self._pre_ingested = False
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
            overrides.update(half_life_short_days=NO_DECAY_DAYS, half_life_long_days=NO_DECAY_DAYS,
                             displacement_rate=0.0)
        if self.variant == "template-names":
            overrides.update(summary_model_groups=0)
        settings = Settings(data_dir=Path(self._tmp), refresh_worker=False, **overrides)
        self._clock = ReplayClock()
        app = create_app(settings, llm=self.llm, clock=self._clock)
        self._client = TestClient(app)
        self._client.__enter__()
        with app.state.container.sessions() as session:
            tenant, key = create_tenant(session, "eval")
            self._tenant_id = tenant.id
        self._auth = {"Authorization": f"Bearer {key}"}
        self._items = items
        self._shown = []
        rows = [self._item_row(i) for i in sorted(items.values(), key=lambda i: i.item_id)]
        for lo in range(0, len(rows), 1000):
            r = self._client.put("/v1/items", headers=self._auth,
                                 json={"items": rows[lo:lo + 1000]})
            r.raise_for_status()
        histories: dict[str, list[Interaction]] = {}
        for e in train:  # sorted by (ts, seq): each user's part in the replay's order
            histories.setdefault(e.user, []).append(e)
        self._ingest_all_but_replayed(histories)
        if self.variant in TRAINED:
            self._train_models(histories, items)

    def _ingest_all_but_replayed(self, histories: Mapping[str, list[Interaction]]) -> None:
        """Every user's history but the last `replay_last` events goes in now, under the
        ids the replay uses: the tenant's event store then looks like a platform's (other
        users' activity included), and `recommend` sends only the replayed tail."""
        if self.replay_last is None or not histories:
            return
        events = [self._event(e, n) for hist in histories.values()
                  for n, e in enumerate(hist[:max(len(hist) - self.replay_last, 0)])]
        self._clock.now = _ts(max(h[-1].ts for h in histories.values())) + timedelta(seconds=1)
        self._send(events)
        self._pre_ingested = True

    def _train_models(self, histories: Mapping[str, list[Interaction]],
                      items: Mapping[str, ItemInfo]) -> None:
        """The tenant's models, trained the way `interest-tracker train` does, on the
        training interactions (the same the baselines see), with the replay's event ids."""
        import time
        from functools import partial

        from service.training.data import event_weight, log_from_rows
        from service.training.jobs import grouping_inputs, item_vectors
        from service.training.ranker import train_ranker
        from service.training.service import save_training, train_log

        assert self._client is not None
        app: Any = self._client.app
        started = time.monotonic()
        # In the order the baselines see (time, then position in the data set): ties in
        # time are common in MovieLens, and the sequence models learn from the order.
        ordered = sorted(((e, n) for hist in histories.values() for n, e in enumerate(hist)),
                         key=lambda pair: (pair[0].ts, pair[0].seq))
        rows = [(e.user, e.item, float(e.ts),
                 event_weight("view" if e.rating is None else "rating",
                              None if e.rating is None else min(5.0, max(0.0, e.rating)), 5.0),
                 f"{e.user}-{n}")
                for e, n in ordered]
        log = log_from_rows(rows)
        texts = {item_id: info.text for item_id, info in items.items()}
        vectors = grouping = None
        if self.variant != "no-llm" and app.state.container.settings.ranker_facet_features:
            # the ablation without facets learns without them too
            with app.state.container.sessions() as session:
                vectors = item_vectors(session, self._tenant_id, app.state.container.vectors)
                grouping = grouping_inputs(session, self._tenant_id,
                                           app.state.container.settings)
        trained = train_log(log, texts, seed=self.seed, sequence_seconds=self.sequence_seconds,
                            sequence_epochs=self.sequence_epochs,
                            ranker_trainer=partial(train_ranker, item_vectors=vectors,
                                                   seed=self.seed, grouping=grouping,
                                                   workers=app.state.container.settings
                                                   .train_workers,
                                                   choose_profile=app.state.container
                                                   .settings.ranker_choose_facet_features),
                            workers=app.state.container.settings.train_workers)
        meta = save_training(app.state.container.settings, self._tenant_id, log, trained,
                             time.monotonic() - started)
        self.models_meta = {"version": meta.version, "seconds": meta.seconds,
                            "sources": meta.sources,
                            "ranker": meta.ranker, "heldout": meta.heldout, "notes": meta.notes}

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
        if cut and not self._pre_ingested:
            self._send(events[:cut])
        for lo in range(cut, len(events), self.refresh_every):
            chunk = events[lo:lo + self.refresh_every]
            self._send(chunk)
            self._clock.now = _ts(history[lo + len(chunk) - 1].ts) + timedelta(seconds=1)
            if self.variant in REFRESHED:
                self._refresh(user, history[lo:lo + len(chunk)], chunk)
        self._clock.now = _ts(history[-1].ts) + timedelta(seconds=1)
        return self._ranking(user, k, exclude, {ev["event_id"]: ev["item_id"] for ev in events})

    def _refresh(self, user: str, interactions: Sequence[Interaction],
                 events: Sequence[dict[str, Any]]) -> None:
        assert self._client is not None
        import time

        started = time.perf_counter()
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

    def _ranking(self, user: str, k: int, exclude: set[str], sent: dict[str, str]) -> list[str]:
        assert self._client is not None
        # Exactly what a client asks; the service never returns what the user consumed.
        r = self._client.get(f"/v1/users/{user}/recommendations", headers=self._auth,
                             params={"k": min(k, 100), "explain": "template"})
        if r.status_code == 404:
            return []
        r.raise_for_status()
        shown = r.json()["items"][:k]  # the runner checks none of them was consumed
        self._shown.append(ShownList(user=user, sent=sent, items=[Shown(
            item_id=i["item_id"],
            because=None if i["because"] is None else tuple(
                Cited(e["event_id"], e["item_id"]) for e in i["because"]["evidence"]),
            kind=None if i["because"] is None else i["because"]["kind"])
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
        from service.profiles.runtime import rules_from

        overrides = dict(self.overrides)
        if self.variant == "no-decay":
            overrides.update(half_life_short_days=NO_DECAY_DAYS, half_life_long_days=NO_DECAY_DAYS,
                             displacement_rate=0.0)
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

