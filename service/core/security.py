"""API keys: long random tokens, shown once, stored as SHA-256.

A fast hash is right here: keys carry 256 bits of entropy, so there is nothing
for a slow password hash to protect against, and every request checks one.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "it_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
