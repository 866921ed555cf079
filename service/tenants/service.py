"""Tenants and their API keys."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.security import hash_api_key, new_api_key
from service.tenants.models import ApiKey, Tenant

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class TenantError(ValueError):
    pass


def create_tenant(session: Session, name: str) -> tuple[Tenant, str]:
    """Create a tenant with one API key; the key is returned once and stored hashed."""
    if not TENANT_NAME.match(name):
        raise TenantError(
            "tenant names are 1-64 chars of lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise TenantError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    key = add_api_key(session, tenant)
    session.commit()
    return tenant, key


def add_api_key(session: Session, tenant: Tenant) -> str:
    key = new_api_key()
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_api_key(key), prefix=key[:10]))
    session.flush()
    return key


def tenant_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    return session.scalar(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
    )
