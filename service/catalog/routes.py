from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.catalog import service
from service.catalog.schemas import ItemBatchIn, ItemOut, ItemUpsertResult
from service.core.batch import read_batch
from service.core.errors import ERROR_RESPONSES
from service.core.openapi import json_body
from service.core.schemas import ItemIdPath
from service.deps import SessionDep, SettingsDep, TenantDep

router = APIRouter(prefix="/v1/items", tags=["catalog"], responses=ERROR_RESPONSES)

@router.put("", response_model=ItemUpsertResult, openapi_extra=json_body(ItemBatchIn))
async def upsert_items(
    request: Request, tenant: TenantDep, session: SessionDep, settings: SettingsDep
) -> ItemUpsertResult:
    """Create or update catalog items (batch, all or nothing)."""
    records = await read_batch(request, "items", settings.max_batch_items)
    return await run_in_threadpool(service.upsert_items, session, tenant.id, records)


@router.get("/{item_id}", response_model=ItemOut)
def get_item(item_id: ItemIdPath, tenant: TenantDep, session: SessionDep) -> ItemOut:
    item = service.get_item(session, tenant.id, item_id)
    return ItemOut.model_validate(item, from_attributes=True)
