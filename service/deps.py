"""FastAPI dependencies as typed aliases, read from the app's container.

The container (`service/container.py`) is built in the lifespan and kept on
`app.state.container`. Getters of it are `async`: FastAPI runs sync dependencies in a
worker thread, and a thread hop per trivial getter cost milliseconds on the hot paths.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.container import AppContainer, Clock
from service.core.config import Settings
from service.core.errors import ApiError
from service.llm.runtime import LLMRuntime
from service.profiles.runtime import ProfileRuntime
from service.tenants.models import Tenant
from service.tenants.service import tenant_for_key
from service.training.store import ModelRegistry
from service.vectors.embeddings import Embedder
from service.vectors.store import VectorStore

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="API key of a tenant")


def container_of(request: Request) -> AppContainer:
    container: AppContainer = request.app.state.container
    return container


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Opening a session does no I/O (it connects on first use, in the handler's thread);
    # closing it returns the connection to the pool, which rolls it back.
    session = container_of(request).sessions()
    try:
        yield session
    finally:
        try:
            session.close()
        except DBAPIError as exc:
            # The connection died after the handler answered (the database restarted, or
            # it was terminated): the pool drops it. Raising here would only break the
            # client's connection, the answer being already decided.
            log.warning("closing a database session failed: %s", type(exc.orig).__name__)


async def get_settings(request: Request) -> Settings:
    return container_of(request).settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_tenant(
    request: Request, session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    unauthorized = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <api key>'.",
                       headers=unauthorized)
    tenant = tenant_for_key(session, credentials.credentials)
    if tenant is None:
        raise ApiError(401, "unauthorized", "Unknown or revoked API key.", headers=unauthorized)
    container_of(request).rate_limiter.check(tenant.id)  # 429 with Retry-After over the rate
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


async def get_llm(request: Request) -> LLMRuntime:
    return container_of(request).llm


LLMDep = Annotated[LLMRuntime, Depends(get_llm)]


async def get_vectors(request: Request) -> VectorStore:
    return container_of(request).vectors


async def get_embedder(request: Request) -> Embedder:
    return container_of(request).embedder


async def get_clock(request: Request) -> Clock:
    return container_of(request).clock


VectorsDep = Annotated[VectorStore, Depends(get_vectors)]
EmbedderDep = Annotated[Embedder, Depends(get_embedder)]
ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_profiles(request: Request) -> ProfileRuntime:
    return container_of(request).profiles


ProfilesDep = Annotated[ProfileRuntime, Depends(get_profiles)]


async def get_models(request: Request) -> ModelRegistry:
    """The app's per-tenant trained models (also on `ProfileRuntime.models`)."""
    return container_of(request).models


ModelsDep = Annotated[ModelRegistry, Depends(get_models)]
