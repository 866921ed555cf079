"""The FastAPI application: wiring only, no domain logic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from service import __version__
from service.catalog.routes import router as catalog_router
from service.catalog.schemas import ItemBatchIn
from service.chat.routes import router as chat_router
from service.container import open_container
from service.core.config import Settings, get_settings
from service.core.db import utcnow
from service.core.errors import install_error_handlers
from service.core.limits import BodySizeLimit
from service.core.openapi import install_openapi
from service.health import router as health_router
from service.ingest.routes import router as ingest_router
from service.ingest.schemas import EventBatchIn
from service.llm.runtime import LLMRuntime
from service.profiles.routes import router as profiles_router
from service.recommend.routes import router as recommend_router
from service.summaries.routes import router as summaries_router
from service.ui.routes import install_inspector
from service.users.routes import router as users_router
from service.vectors.embeddings import Embedder


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
        with open_container(settings, llm, embedder, clock, demo) as container:
            app.state.container = container
            yield

    app = FastAPI(
        title="interest-tracker",
        version=__version__,
        description="LLM-tracked user interests with explained recommendations.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for router in (health_router, catalog_router, ingest_router, users_router, summaries_router,
                   profiles_router, recommend_router, chat_router):
        app.include_router(router)
    install_openapi(app, [EventBatchIn, ItemBatchIn])
    install_inspector(app)
    return app
