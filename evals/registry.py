"""The models `interest-tracker eval` can run, by name.

Each factory receives the parsed command line (for `seed`, `k` and the like) and
returns a fresh, unfitted `Recommender`. Baselines and our own model add themselves
here; `random` is the floor every model must clear.
"""

from __future__ import annotations

import argparse
import atexit
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evals.types import Interaction, ItemInfo, Recommender


class RandomRecommender:
    """Uniformly random unconsumed items; seeded per user so reruns are identical."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._catalog: list[str] = []
        self._known: set[str] = set()

    def fit(self, train: Sequence[Interaction], items: Mapping[str, ItemInfo]) -> None:
        self._catalog = sorted(items)
        self._known = set(self._catalog)

    def recommend(self, user: str, history: Sequence[Interaction], k: int,
                  exclude: set[str]) -> list[str]:
        rng = random.Random(f"{self.seed}:{user}")
        available = len(self._catalog) - len(exclude & self._known)
        if available <= 2 * k:
            pool = [i for i in self._catalog if i not in exclude]
            rng.shuffle(pool)
            return pool[:k]
        chosen: dict[str, None] = {}
        while len(chosen) < k:
            item = self._catalog[rng.randrange(len(self._catalog))]
            if item not in exclude:
                chosen[item] = None
        return list(chosen)


ModelFactory = Callable[[argparse.Namespace], Recommender]

MODELS: dict[str, ModelFactory] = {
    "random": lambda args: RandomRecommender(seed=getattr(args, "seed", 0)),
}


def register(name: str, factory: ModelFactory) -> None:
    """Add a model under a new name; a clash is a bug, not an override."""
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = factory


def _register_baselines() -> None:
    from evals.baselines import BASELINES
    from evals.baselines.gru import GRURecommender
    from evals.baselines.sasrec import SASRecRecommender

    for name, factory in BASELINES.items():
        if name == "random":
            continue  # the one above, seeded from the command line
        register(name, _factory(factory, seeded=factory in (GRURecommender, SASRecRecommender)))


def _factory(make: Callable[..., Recommender], seeded: bool) -> ModelFactory:
    from evals.baselines.sasrec import SASRecRecommender

    def build(args: argparse.Namespace) -> Recommender:
        if make is SASRecRecommender:
            return SASRecRecommender(seed=getattr(args, "seed", 0),
                                     epochs=getattr(args, "sequence_epochs", None) or None)
        return make(seed=getattr(args, "seed", 0)) if seeded else make()

    return build


_register_baselines()


_shared_llm: Any = None


def shared_llm() -> Any:
    """One LLM runtime for every LLM variant of ours in this process, answers cached.

    The summarizer's prompt holds only the user's events (never the profile), and the
    model decodes greedily (temperature 0), so `ours` and `ours-no-decay` ask the same
    questions: an in-memory LangChain cache on that one chat model answers the second
    variant's repeats, so the decay ablation isolates the merge rules and costs no model
    time. The cache keys on the chat model's parameters, hence one runtime (and one
    embedded server) for all of them.
    """
    global _shared_llm
    if _shared_llm is None:
        from langchain_core.caches import InMemoryCache

        from service.core.config import Settings
        from service.llm.runtime import LLMRuntime

        _shared_llm = LLMRuntime(Settings(), cache=InMemoryCache())
        atexit.register(_shared_llm.close)
    return _shared_llm


def _register_ours() -> None:
    from evals.ours import OursRecommender, Variant

    variants: tuple[Variant, ...] = ("full", "no-decay", "no-llm", "facets-only",
                                     "template-names")
    for variant in variants:
        def build(args: argparse.Namespace, variant: Variant = variant) -> Recommender:
            return OursRecommender(
                variant=variant, refresh_every=getattr(args, "refresh_every", 20),
                replay_last=getattr(args, "replay_last", 40),
                positive_threshold=getattr(args, "positive_threshold", 3.5),
                seed=getattr(args, "seed", 0),
                sequence_epochs=getattr(args, "sequence_epochs", None) or None,
                llm=None if variant in ("no-llm", "template-names") else shared_llm())

        register("ours" if variant == "full" else f"ours-{variant}", build)


_register_ours()
