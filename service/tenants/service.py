"""Tenants and their API keys."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.security import hash_api_key, new_api_key
from service.tenants.models import ApiKey, Tenant

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DEV_TENANT = "dev"
DEV_KEY_FILE = "dev-api-key"


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


def ensure_tenant_key(session: Session, name: str, key_file: Path) -> tuple[Tenant, str]:
    """The tenant (created if missing) and a working key for it, kept in `key_file`.

    The file lets the key survive restarts (only its hash is in the database); a key
    the database does not know, or no longer accepts, is replaced by a new one.
    """
    tenant = tenant_by_name(session, name)
    if tenant is None:
        tenant, key = create_tenant(session, name)
    else:
        key = key_file.read_text().strip() if key_file.exists() else ""
        owner = tenant_for_key(session, key) if key else None
        if owner is None or owner.id != tenant.id:
            key = add_api_key(session, tenant)
            session.commit()
    write_key_file(key_file, key)
    return tenant, key


def write_key_file(path: Path, key: str) -> None:
    """Write a key readable by its owner only (0600 from the first byte on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an older file may have been wider
        handle.write(key + "\n")


def ensure_dev_key(session: Session, settings: Settings) -> str:
    """The development tenant's key, kept in the data folder so it survives restarts."""
    _, key = ensure_tenant_key(session, DEV_TENANT, settings.data_dir / DEV_KEY_FILE)
    return key
