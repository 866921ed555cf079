"""Forgetting a user in one place: every row that names them, and what older versions of
the service left about them in the vector store.

A domain registers what it keeps about a user by giving its table a `user_pk` foreign
key to `users.id`. Every such table is emptied of the user's rows, dependents first (the
order of the foreign keys between them: chat turns before the traces they point at), so
a table added later is forgotten too without anyone having to list it here. The vector
store holds no per-user entries any more; a facet collection an older version wrote is
cleared first, so that if the store is down nothing is deleted and a retry still finds
everything to remove.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Table, delete
from sqlalchemy.orm import Session

from service.core.db import Base
from service.models import load_all_models
from service.users.models import User
from service.vectors.errors import vector_store_call
from service.vectors.store import VectorStore


@cache
def user_tables() -> tuple[Table, ...]:
    """Tables holding rows about one user (a `user_pk` to `users.id`), dependents first;
    read from the metadata once."""
    load_all_models()
    users = User.__table__
    return tuple(table for table in reversed(Base.metadata.sorted_tables)
                 if "user_pk" in table.c
                 and any(fk.column.table is users for fk in table.c.user_pk.foreign_keys))


def forget_user(session: Session, user: User, vectors: VectorStore) -> None:
    """Delete everything about `user`, the user row last (the caller commits)."""
    with vector_store_call():
        vectors.forget_legacy_facets(user.tenant_id, user.user_id)
    for table in user_tables():
        session.execute(delete(table).where(table.c.user_pk == user.id))
    session.execute(delete(User).where(User.id == user.id))
