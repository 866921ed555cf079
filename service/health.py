"""Liveness, readiness, and where a background demo load is."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from service.core.errors import ErrorBody, ErrorResponse
from service.deps import container_of

router = APIRouter(tags=["health"])


class DemoProgress(BaseModel):
    """The demo tenant's load in the background (`interest-tracker serve` on first start)."""

    state: str  # loading | loaded | failed
    stage: str  # starting | catalog | ratings | raters | profiles | training | done
    done: int
    total: int
    seconds: float
    error: str | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
    demo: DemoProgress | None = Field(default=None,
                                      description="the demo's load, when the service loads one")


class NotReady(ErrorResponse):
    """The error shape, plus the demo's progress when a load is what it waits for."""

    demo: DemoProgress | None = None


@router.get("/healthz", response_model=Health, response_model_exclude={"demo"})
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


def _database(engine: Engine) -> str:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        return f"unreachable: {type(exc).__name__}"
    return "ok"


def demo_progress(request: Request) -> DemoProgress | None:
    loader = container_of(request).demo
    if loader is None:
        return None
    return DemoProgress.model_validate(vars(loader.status()))


@router.get("/readyz", response_model=Health,
            responses={503: {"model": NotReady, "description": "not ready (yet)"}})
async def readyz(request: Request) -> Health | JSONResponse:
    """Every dependency answers (database, vector store, LLM) and the demo, when the
    service loads one, is loaded. While it loads, the answer is a 503 whose `demo` says
    where the load is."""
    checks: dict[str, str] = {}
    container = container_of(request)
    # Each check blocks (a dead server waits for its timeout): none on the event loop.
    checks["database"] = await run_in_threadpool(_database, container.engine)
    checks["vector_store"] = await run_in_threadpool(container.vectors.health)
    checks["llm"] = await run_in_threadpool(container.llm.health)
    demo = demo_progress(request)
    if demo is not None:
        checks["demo"] = (f"loading: {demo.stage} {demo.done}/{demo.total}"
                          if demo.state == "loading" else demo.state)
    failing = [name for name, state in checks.items()
               if not (state in ("ok", "loaded", "failed") or state.startswith("idle"))]
    if failing:
        body = NotReady(error=ErrorBody(code="not_ready", message="not ready: " + ", ".join(
            f"{name} {checks[name]}" for name in failing)), demo=demo)
        return JSONResponse(status_code=503, content=body.model_dump())
    return Health(status="ready", checks=checks, demo=demo)
