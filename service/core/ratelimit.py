"""Per-tenant request rate limits: `429 rate_limited` with `Retry-After` (seconds).

A moving window (`limits`): at most N requests of a tenant in any window of the
configured length (`INTEREST_TENANT_RATE_LIMIT`, such as "600/minute"; unset: no limit).
Counts are kept in `INTEREST_RATE_LIMIT_STORAGE`: `memory://` (the default) counts per
API process, so N replicas let a tenant through N times the limit; a shared store such
as `redis://host:6379` (with the `redis` package installed) makes the limit global.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse, storage, strategies

from service.core.errors import ApiError


def parse_rate(rate: str) -> RateLimitItem:
    """"600/minute", "10/second", "1000 per hour": or a ValueError that says what is wrong."""
    try:
        return parse(rate)
    except ValueError as exc:
        raise ValueError(f"not a rate limit: {rate!r} (write it as '600/minute', "
                         "'10/second' or '1000 per hour')") from exc


class TenantRateLimiter:
    """Counts each tenant's requests; `check` raises 429 once a tenant is over its rate."""

    def __init__(self, rate: str | None, storage_uri: str = "memory://") -> None:
        self.rate = rate
        self.item = parse_rate(rate) if rate else None
        self.limiter = (strategies.MovingWindowRateLimiter(storage.storage_from_string(
            storage_uri)) if self.item is not None else None)

    def check(self, tenant_id: int) -> None:
        if self.item is None or self.limiter is None:
            return
        key = ("tenant", str(tenant_id))
        if self.limiter.hit(self.item, *key):
            return
        reset_at, _ = self.limiter.get_window_stats(self.item, *key)
        retry = max(1, math.ceil(reset_at - time.time()))
        raise ApiError(429, "rate_limited",
                       f"This tenant sent more than {self.rate} requests; retry in {retry} s.",
                       headers={"Retry-After": str(retry)})
