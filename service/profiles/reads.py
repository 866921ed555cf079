"""Reading the stored profile: facet rows as the merge sees them, versions newest first.

The API, recommendations and the writers in `store.py` read through here; nothing here
writes.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.profiles.merge import ProfileFacet
from service.profiles.models import ProfileFacetRow, ProfileVersion
from service.users.models import User


def pack(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def unpack(blob: bytes) -> tuple[float, ...]:
    values = array("f")
    values.frombytes(blob)
    return tuple(values)


def horizon_of(stored: str) -> Literal["short", "long"]:
    """A stored horizon as the merge's literal (anything but "long" is short)."""
    return "long" if stored == "long" else "short"


def polarity_of(stored: str) -> Literal["like", "avoid"]:
    """A stored polarity as the merge's literal (anything but "avoid" is a like)."""
    return "avoid" if stored == "avoid" else "like"


def to_facet(row: ProfileFacetRow, with_embedding: bool = True) -> ProfileFacet:
    """The merge's view of a row; reads skip unpacking the vector."""
    return ProfileFacet(
        facet_id=row.facet_id, label=row.label, description=row.description,
        strength=row.strength, strength_at=row.strength_at,
        horizon=horizon_of(row.horizon), polarity=polarity_of(row.polarity),
        evidence=tuple(row.evidence), embedding=unpack(row.embedding) if with_embedding else (),
        first_seen=row.first_seen, last_reinforced=row.last_reinforced,
        reinforcements=row.reinforcements, pinned=row.pinned, suppressed=row.suppressed,
        archived=row.archived,
    )


def facet_rows(session: Session, user_pk: int) -> list[ProfileFacetRow]:
    return list(session.scalars(
        select(ProfileFacetRow).where(ProfileFacetRow.user_pk == user_pk)
        .order_by(ProfileFacetRow.id).execution_options(populate_existing=True)
    ))


def versions(session: Session, user: User, limit: int,
             before: int | None = None) -> list[ProfileVersion]:
    query = select(ProfileVersion).where(ProfileVersion.user_pk == user.id)
    if before is not None:
        query = query.where(ProfileVersion.version < before)
    return list(session.scalars(query.order_by(ProfileVersion.version.desc()).limit(limit)))
