from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.core.errors import error_response

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "not ready"}})
async def readyz(request: Request) -> Health | JSONResponse:
    """Every dependency answers: database, vector store, LLM."""
    checks: dict[str, str] = {}
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["vector_store"] = await run_in_threadpool(request.app.state.vectors.health)
    checks["llm"] = await run_in_threadpool(request.app.state.llm.health)
    failing = [name for name, state in checks.items()
               if not (state == "ok" or state.startswith("idle"))]
    if failing:
        return error_response(503, "not_ready", "not ready: " + ", ".join(
            f"{name} {checks[name]}" for name in failing))
    return Health(status="ready", checks=checks)
