from __future__ import annotations

from fastapi import APIRouter

from service.core.errors import ERROR_RESPONSES
from service.core.schemas import UserIdPath
from service.deps import SessionDep, TenantDep, VectorsDep
from service.users import service
from service.users.schemas import UserDeleted

router = APIRouter(prefix="/v1/users", tags=["users"], responses=ERROR_RESPONSES)


@router.delete("/{user_id}", response_model=UserDeleted)
def delete_user(
    user_id: UserIdPath, tenant: TenantDep, session: SessionDep, vectors: VectorsDep
) -> UserDeleted:
    """Forget a user and everything stored about them, vectors included."""
    removed = service.delete_user(session, tenant.id, user_id, vectors)
    return UserDeleted(user_id=user_id, events_deleted=removed)
