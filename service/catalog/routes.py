from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.catalog import service
from service.catalog.schemas import ItemBatchIn, ItemOut, ItemUpsertResult
from service.core.batch import read_batch
from service.core.errors import ERROR_RESPONSES
from service.core.openapi import json_body
from service.core.schemas import ItemIdPath
from service.deps import EmbedderDep, SessionDep, SettingsDep, TenantDep, VectorsDep

router = APIRouter(prefix="/v1/items", tags=["catalog"], responses=ERROR_RESPONSES)


@router.put("", response_model=ItemUpsertResult, openapi_extra=json_body(ItemBatchIn))
async def upsert_items(
    request: Request, tenant: TenantDep, session: SessionDep, settings: SettingsDep,
    embedder: EmbedderDep, vectors: VectorsDep,
) -> ItemUpsertResult:
    """Create or update catalog items (batch, all or nothing), then embed what changed.

    Items are stored first; if embedding fails they stay `index_pending` and are
    embedded by a later upsert or the background worker.
    """
    records = await read_batch(request, "items", settings.max_batch_items)
    result = await run_in_threadpool(service.upsert_items, session, tenant.id, records)
    indexed, pending = await run_in_threadpool(
        service.index_pending_items, session, tenant.id, embedder, vectors)
    return result.model_copy(update={"indexed": indexed, "index_pending": pending})


@router.get("/{item_id}", response_model=ItemOut)
def get_item(item_id: ItemIdPath, tenant: TenantDep, session: SessionDep) -> ItemOut:
    item = service.get_item(session, tenant.id, item_id)
    return ItemOut.model_validate(item)
