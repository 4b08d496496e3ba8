"""A Redis connection that never makes a request fail: short timeouts, and after an error
Redis is skipped for a back-off period (growing to 10 s) before the next try. redis-py
reconnects by itself on that next command."""
from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ResilientRedis:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False, health_check_interval=0
        )
        self._down_until = 0.0
        self._backoff = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def call(self, operation: Callable[[redis.Redis], Awaitable[T]], default: Any = None) -> T | Any:
        """Run `operation` on the client, or return `default` when Redis is down or slow."""
        if not self.available:
            return default
        try:
            result = await operation(self.client)
        except (RedisError, OSError, TimeoutError) as error:
            self._backoff = min(10.0, max(0.25, self._backoff * 2))
            self._down_until = time.monotonic() + self._backoff
            logger.warning("redis unavailable (%s); skipping it for %.2f s", error.__class__.__name__, self._backoff)
            return default
        if self._backoff:
            logger.info("redis is back")
        self._backoff = 0.0
        return result

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except (RedisError, OSError):
            pass
