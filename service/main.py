"""The FastAPI application: wiring only, no domain logic."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from service import __version__
from service.catalog.routes import router as catalog_router
from service.catalog.schemas import ItemBatchIn
from service.chat.routes import router as chat_router
from service.core.config import Settings, get_settings
from service.core.db import make_engine, make_sessionmaker, migrate, utcnow
from service.core.errors import install_error_handlers
from service.core.limits import BodySizeLimit
from service.core.openapi import install_openapi
from service.core.ratelimit import TenantRateLimiter
from service.health import router as health_router
from service.ingest.routes import router as ingest_router
from service.ingest.schemas import EventBatchIn
from service.llm.runtime import LLMRuntime
from service.profiles.routes import router as profiles_router
from service.profiles.service import ProfileRuntime
from service.profiles.worker import RefreshWorker
from service.recommend.routes import router as recommend_router
from service.summaries.routes import router as summaries_router
from service.training.ranker import LearnedRanker
from service.training.store import ModelRegistry
from service.ui.routes import install_inspector
from service.users.routes import router as users_router
from service.vectors.embeddings import Embedder, LocalEmbedder, embedder_for
from service.vectors.store import VectorStore, client_for


def create_app(
    settings: Settings | None = None,
    llm: LLMRuntime | None = None,
    embedder: Embedder | None = None,
    clock: Callable[[], datetime] = utcnow,
    demo: bool = False,
) -> FastAPI:
    """The app; tests pass a shared model runtime, and a clock to let days pass.

    With `demo` (what `serve` does when the demo is on) the demo tenant loads in the
    background while the app serves; /readyz reports its progress.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The service's numpy work is small matrices per request (facet x candidate
        # cosines). Multi-threaded OpenBLAS beside torch's OpenMP pool on 2 cores made
        # each such product 10-20x slower (threads spinning against each other), so BLAS
        # gets one thread; concurrency comes from requests, not from inside one.
        threadpool_limits(limits=1, user_api="blas")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.sqlalchemy_url)
        migrate(engine)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        owns_llm = llm is None
        app.state.llm = llm or LLMRuntime(settings)
        app.state.embedder = embedder or embedder_for(settings)
        if isinstance(app.state.embedder, LocalEmbedder):
            # Loading takes seconds; do it now so the first upsert does not wait for it.
            threading.Thread(target=app.state.embedder.warm_up, daemon=True).start()
        app.state.vectors = VectorStore(client_for(settings), settings.chroma_collection_prefix)
        app.state.clock = clock
        # Each tenant's trained models, loaded once and swapped whole when retrained.
        app.state.models = ModelRegistry.for_settings(settings, LearnedRanker.load)
        app.state.profiles = ProfileRuntime(settings, app.state.llm, app.state.embedder,
                                            app.state.vectors, clock, models=app.state.models)
        worker = RefreshWorker(app.state.sessions, app.state.profiles)
        start_worker = worker.start if settings.refresh_worker else None
        app.state.demo = None
        if demo:
            from service.demo import BackgroundDemo  # the data set loader, only when asked

            # The worker waits for the load: it would otherwise refresh and train the
            # demo tenant beside it.
            app.state.demo = BackgroundDemo(settings, app.state.sessions, app.state.profiles,
                                            then=start_worker)
            app.state.demo.start()
        elif start_worker is not None:
            start_worker()
        app.state.worker = worker
        try:
            yield
        finally:
            if app.state.demo is not None:
                app.state.demo.stop()
            worker.stop()
            if owns_llm:
                app.state.llm.close()
            engine.dispose()

    app = FastAPI(
        title="interest-tracker",
        version=__version__,
        description="LLM-tracked user interests with explained recommendations.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limiter = TenantRateLimiter(settings.tenant_rate_limit,
                                               settings.rate_limit_storage)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for router in (health_router, catalog_router, ingest_router, users_router, summaries_router,
                   profiles_router, recommend_router, chat_router):
        app.include_router(router)
    install_openapi(app, [EventBatchIn, ItemBatchIn])
    install_inspector(app)
    return app
