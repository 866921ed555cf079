"""A user's own edits of their profile: pin, suppress, reword or delete a facet.

Each edit is a profile version (trigger "edit"); the merge keeps edits across later
refreshes (`merge.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.core.errors import NotFound, embedder_unavailable
from service.profiles.drafting import facet_text
from service.profiles.merge import decayed_strength
from service.profiles.models import Profile, ProfileFacetRow
from service.profiles.reads import facet_rows, pack, to_facet
from service.profiles.runtime import ProfileRuntime
from service.profiles.store import RefreshInput, lock_profile, write_version
from service.users.models import User


@dataclass
class FacetEdit:
    pinned: bool | None = None
    suppressed: bool | None = None
    label: str | None = None
    description: str | None = None


def _locked_facet(
    session: Session, user: User, facet_id: str, at: datetime
) -> tuple[Profile, list[ProfileFacetRow], ProfileFacetRow]:
    """The profile (locked), all its facet rows, and the one a user edit is about."""
    profile = lock_profile(session, user, at)
    rows = facet_rows(session, user.id)
    row = next((r for r in rows if r.facet_id == facet_id), None)
    if row is None:
        session.rollback()
        raise NotFound("facet_not_found", f"No facet {facet_id!r} in this user's profile.")
    return profile, rows, row


def edit_facet(
    session: Session, user: User, facet_id: str, edit: FacetEdit, rt: ProfileRuntime
) -> ProfileFacetRow:
    """Apply a user's edit; it holds across later refreshes (the merge keeps it)."""
    with rt.locks.hold(user.id):
        at = rt.clock()
        profile, rows, row = _locked_facet(session, user, facet_id, at)
        rules = rt.rules
        if edit.pinned is not None and edit.pinned != row.pinned:
            # Pinning freezes today's strength; unpinning lets it decay from today.
            row.strength = decayed_strength(to_facet(row), at, rules)
            row.strength_at = at
            row.pinned = edit.pinned
            if edit.pinned:
                row.archived = False
        if edit.suppressed is not None:
            row.suppressed = edit.suppressed
        label = edit.label if edit.label is not None else row.label
        description = edit.description if edit.description is not None else row.description
        if (label, description) != (row.label, row.description):
            row.label, row.description = label, description
            try:
                row.embedding = pack(rt.embedder.embed([facet_text(label, description)])[0])
            except Exception as exc:  # the embedder is a remote service in production
                session.rollback()
                raise embedder_unavailable("the edited facet", exc) from exc
        row.edited_at = at
        facets = [to_facet(r) for r in rows]
        write_version(session, user, profile, facets, at, "edit", RefreshInput(), rules)
        session.commit()
        return row


def delete_facet(session: Session, user: User, facet_id: str, rt: ProfileRuntime) -> None:
    """Remove a facet now (history keeps it). Activity may bring it back; suppress to stop that."""
    with rt.locks.hold(user.id):
        at = rt.clock()
        profile, rows, row = _locked_facet(session, user, facet_id, at)
        session.delete(row)
        remaining = [to_facet(r) for r in rows if r is not row]
        write_version(session, user, profile, remaining, at, "edit", RefreshInput(), rt.rules)
        session.commit()
