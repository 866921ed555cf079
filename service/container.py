"""The application container: what every request of one app shares, built once.

`open_container` builds it in the FastAPI lifespan (`service/main.py`), which keeps it on
`app.state.container`; the dependencies of `service/deps.py` read it from there. Nothing
here is a module-level global: two apps in one process (the tests) have two containers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.core.config import Settings
from service.core.db import make_engine, make_sessionmaker, migrate, utcnow
from service.core.ratelimit import TenantRateLimiter
from service.llm.runtime import LLMRuntime
from service.profiles.runtime import ProfileRuntime
from service.profiles.worker import RefreshWorker
from service.training.ranker import LearnedRanker
from service.training.store import ModelRegistry
from service.vectors.embeddings import Embedder, LocalEmbedder, embedder_for
from service.vectors.store import VectorStore

if TYPE_CHECKING:
    from service.demo import BackgroundDemo

Clock = Callable[[], datetime]


@dataclass
class AppContainer:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    llm: LLMRuntime
    embedder: Embedder
    vectors: VectorStore
    clock: Clock
    # Each tenant's trained models, loaded once and swapped whole when retrained.
    models: ModelRegistry
    profiles: ProfileRuntime
    rate_limiter: TenantRateLimiter
    worker: RefreshWorker
    demo: BackgroundDemo | None = None  # the demo tenant's load, when the app loads one


@contextmanager
def open_container(
    settings: Settings,
    llm: LLMRuntime | None = None,
    embedder: Embedder | None = None,
    clock: Clock = utcnow,
    demo: bool = False,
) -> Iterator[AppContainer]:
    """Migrate the database, connect the stores, start the worker (or the demo load,
    then the worker); on exit stop them and close what was opened here (a passed-in
    LLM runtime belongs to the caller)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    owns_llm = llm is None
    llm = llm or LLMRuntime(settings)
    embedder = embedder or embedder_for(settings)
    if isinstance(embedder, LocalEmbedder):
        # Loading takes seconds; do it now so the first upsert does not wait for it.
        threading.Thread(target=embedder.warm_up, daemon=True).start()
    vectors = VectorStore.for_settings(settings)
    models = ModelRegistry.for_settings(settings, LearnedRanker.load)
    profiles = ProfileRuntime(settings, llm, embedder, vectors, clock, models=models)
    container = AppContainer(
        settings=settings, engine=engine, sessions=sessions, llm=llm, embedder=embedder,
        vectors=vectors, clock=clock, models=models, profiles=profiles,
        rate_limiter=TenantRateLimiter(settings.tenant_rate_limit, settings.rate_limit_storage),
        worker=RefreshWorker(sessions, profiles),
    )
    start_worker = container.worker.start if settings.refresh_worker else None
    if demo:
        from service.demo import BackgroundDemo  # the data set loader, only when asked

        # The worker waits for the load: it would otherwise refresh and train the
        # demo tenant beside it.
        container.demo = BackgroundDemo(settings, sessions, profiles, then=start_worker)
        container.demo.start()
    elif start_worker is not None:
        start_worker()
    try:
        yield container
    finally:
        if container.demo is not None:
            container.demo.stop()
        container.worker.stop()
        if owns_llm:
            llm.close()
        engine.dispose()
