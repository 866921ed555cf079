"""Users are created by ingest; this module lists, finds and forgets them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core.errors import NotFound
from service.core.pagination import decode_cursor, paginate
from service.ingest.models import Event
from service.profiles.models import Profile
from service.users.deletion import forget_user
from service.users.models import User
from service.users.schemas import UserPage, UserSummary
from service.vectors.store import VectorStore


def get_user(session: Session, tenant_id: int, user_id: str) -> User:
    user = session.scalar(select(User).where(User.tenant_id == tenant_id, User.user_id == user_id))
    if user is None:
        raise NotFound("user_not_found", f"No user {user_id!r} in this tenant.")
    return user


CURSOR_KIND = "u"  # `u|<user id>`, the same text as the cursors issued before core.pagination


def list_users(session: Session, tenant_id: int, limit: int, cursor: str | None,
               prefix: str | None) -> UserPage:
    """The tenant's users by id, a page at a time; `prefix` keeps the ids starting with
    it (case-sensitive, as ids are)."""
    query = (select(User, Profile.version, Profile.refreshed_at)
             .outerjoin(Profile, Profile.user_pk == User.id)
             .where(User.tenant_id == tenant_id))
    if prefix:
        # LIKE narrows (and ignores case on SQLite); the comparison keeps exact prefixes.
        query = query.where(User.user_id.startswith(prefix, autoescape=True),
                            func.substr(User.user_id, 1, len(prefix)) == prefix)
    if cursor is not None:
        (after,) = decode_cursor(cursor, CURSOR_KIND, 1)
        query = query.where(User.user_id > after)
    rows = list(session.execute(query.order_by(User.user_id).limit(limit + 1)))
    page, next_cursor = paginate(rows, limit, CURSOR_KIND, lambda row: (row[0].user_id,))
    return UserPage(
        users=[UserSummary(user_id=user.user_id, created_at=user.created_at, stale=user.stale,
                           events_since_refresh=user.events_since_refresh,
                           profile_version=version or 0, refreshed_at=refreshed_at)
               for user, version, refreshed_at in page],
        next_cursor=next_cursor,
    )


def delete_user(session: Session, tenant_id: int, user_id: str, vectors: VectorStore) -> int:
    """Forget a user: every row about them (events, profile versions and their narratives,
    recommendation traces and their chat turns, summaries, jobs) and any vector an older
    version kept (`deletion.forget_user`). Returns the events removed."""
    user = get_user(session, tenant_id, user_id)
    removed = session.scalar(select(func.count()).where(Event.user_pk == user.id)) or 0
    forget_user(session, user, vectors)
    session.commit()
    return int(removed or 0)
