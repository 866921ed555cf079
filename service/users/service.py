"""Users are created by ingest; this module finds and forgets them."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.chat.service import forget_chats
from service.core.errors import not_found
from service.ingest.models import Event
from service.profiles.service import forget_profile
from service.recommend.service import forget_recommendations
from service.summaries.models import SummaryRun
from service.users.models import User
from service.vectors.store import VectorStore


def get_user(session: Session, tenant_id: int, user_id: str) -> User:
    user = session.scalar(select(User).where(User.tenant_id == tenant_id, User.user_id == user_id))
    if user is None:
        raise not_found("user_not_found", f"No user {user_id!r} in this tenant.")
    return user


def delete_user(session: Session, tenant_id: int, user_id: str, vectors: VectorStore) -> int:
    """Forget a user: their vectors, then every row (profile versions and their
    narratives, recommendation traces and their chat turns, summaries, events). Returns
    the events removed."""
    user = get_user(session, tenant_id, user_id)
    removed = session.scalar(select(func.count()).where(Event.user_pk == user.id)) or 0
    forget_profile(session, user, vectors)
    forget_chats(session, user)  # before the traces they point at
    forget_recommendations(session, user)
    session.execute(delete(SummaryRun).where(SummaryRun.user_pk == user.id))
    session.execute(delete(Event).where(Event.user_pk == user.id))
    session.execute(delete(User).where(User.id == user.id))
    session.commit()
    return int(removed or 0)
