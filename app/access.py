"""Optional bearer API keys and per-key rate limits, as a dependency of the /v1 routers
(health, readiness and metrics stay open)."""
from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from app.errors import ApiError
from app.rate_limit import retry_after_header


async def require_access(request: Request) -> None:
    state = request.app.state
    keys: frozenset[str] = state.api_keys
    identity = request.client.host if request.client else "anonymous"
    if keys:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip(), key) for key in keys):
            raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')",
                           headers={"WWW-Authenticate": "Bearer"})
        # A digest, so buckets shared through Redis never hold the key itself.
        identity = "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:24]
    wait = await state.rate_limiter.acquire(identity)
    if wait > 0:
        state.metrics.rate_limited.inc()
        raise ApiError(429, "rate limit exceeded", headers={"Retry-After": retry_after_header(wait)})
