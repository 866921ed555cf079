from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.core.errors import ERROR_RESPONSES
from service.core.schemas import UserIdPath
from service.deps import SessionDep, TenantDep, VectorsDep
from service.users import service
from service.users.schemas import UserDeleted, UserPage

router = APIRouter(prefix="/v1/users", tags=["users"], responses=ERROR_RESPONSES)

# A prefix of a user id: the id characters, possibly empty (then: every user).
PREFIX_PATTERN = r"^[A-Za-z0-9._:@+=~-]{0,128}$"


@router.get("", response_model=UserPage)
def list_users(
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    prefix: Annotated[str | None, Query(pattern=PREFIX_PATTERN,
                                        description="only ids starting with this")] = None,
) -> UserPage:
    """The tenant's users by id, a page at a time, with their refresh state."""
    return service.list_users(session, tenant.id, limit, cursor, prefix)


@router.delete("/{user_id}", response_model=UserDeleted)
def delete_user(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, vectors: VectorsDep
) -> UserDeleted:
    """Forget a user and everything stored about them, vectors included."""
    removed = service.delete_user(session, tenant.id, user_id, vectors)
    return UserDeleted(user_id=user_id, events_deleted=removed)
