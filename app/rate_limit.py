"""Per-key token buckets: `rate` requests per second with bursts up to `burst`. With Redis the
buckets are shared by every replica (one atomic script per request); without it, or while
Redis is down, each process keeps its own."""
from __future__ import annotations

import math
import time

from app.redis_client import ResilientRedis

# KEYS[1] bucket; ARGV: rate, burst, now (s). Returns {allowed, seconds until a token}.
TOKEN_BUCKET_LUA = """
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


class RateLimiter:
    def __init__(self, rate: float, burst: int, redis: ResilientRedis | None = None) -> None:
        self.rate, self.burst, self.redis = rate, burst, redis
        self._local: dict[str, tuple[float, float]] = {}
        self._script = redis.client.register_script(TOKEN_BUCKET_LUA) if redis else None

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def acquire(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        if self._script is not None:
            script = self._script
            result = await self.redis.call(
                lambda client: script(keys=[f"rnnserve:ratelimit:{key}"], args=[self.rate, self.burst, time.time()])
            )
            if result is not None:
                allowed, wait = int(result[0]), float(result[1])
                return 0.0 if allowed else max(wait, 0.001)
        return self._acquire_local(key)

    def _acquire_local(self, key: str) -> float:
        now = time.monotonic()
        tokens, at = self._local.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._local[key] = (tokens - 1, now)
            return 0.0
        self._local[key] = (tokens, now)
        return (1 - tokens) / self.rate


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
