"""Cache of deterministic results.

Key = sha256 of (model id, model revision, endpoint, canonical JSON of the normalised
request), so a retrained model never serves an old answer. Values are stored with a format
version. Identical requests in flight at once are computed once (single flight).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

if TYPE_CHECKING:
    from app.redis_client import ResilientRedis

FORMAT_VERSION = 1


def cache_key(model_id: str, revision: str, endpoint: str, request: dict[str, Any]) -> str:
    canonical = json.dumps([model_id, revision, endpoint, request], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "rnnserve:v%d:%s" % (FORMAT_VERSION, hashlib.sha256(canonical.encode()).hexdigest())


class CacheBackend(Protocol):
    async def get(self, key: str) -> dict | None: ...

    async def set(self, key: str, value: dict) -> None: ...


class InProcessLRU:
    """Bounded least-recently-used map; the embedded default."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, str] = OrderedDict()

    async def get(self, key: str) -> dict | None:
        raw = self._entries.get(key)
        if raw is None:
            return None
        self._entries.move_to_end(key)
        return json.loads(raw)

    async def set(self, key: str, value: dict) -> None:
        if self.max_entries <= 0:
            return
        # Stored serialised: a caller mutating its response cannot change the cached copy.
        self._entries[key] = json.dumps(value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisCache:
    """The production backend: shared by every replica, entries expire after `ttl_s`, and
    Redis's own maxmemory policy bounds its size. Failures read as misses."""

    def __init__(self, redis: "ResilientRedis", ttl_s: int) -> None:
        self.redis, self.ttl_s = redis, ttl_s

    async def get(self, key: str) -> dict | None:
        raw = await self.redis.call(lambda client: client.get(key))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    async def set(self, key: str, value: dict) -> None:
        payload = json.dumps(value, separators=(",", ":"))
        await self.redis.call(lambda client: client.set(key, payload, ex=self.ttl_s))


class ResultCache:
    def __init__(self, backend: CacheBackend, on_lookup: Callable[[bool], None] | None = None) -> None:
        self.backend = backend
        self.on_lookup = on_lookup or (lambda hit: None)
        self._in_flight: dict[str, asyncio.Future] = {}

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[dict]]) -> tuple[dict, bool]:
        """(value, cached): from the cache, from an identical request already running, or
        computed now and stored."""
        stored = await self.backend.get(key)
        hit = stored is not None and stored.get("format") == FORMAT_VERSION
        self.on_lookup(hit)
        if hit:
            return stored["body"], True
        running = self._in_flight.get(key)
        if running is not None:
            return await asyncio.shield(running), False
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            value = await compute()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: followers re-raise it, nobody else must
            raise
        else:
            future.set_result(value)
            await self.backend.set(key, {"format": FORMAT_VERSION, "body": value})
            return value, False
        finally:
            del self._in_flight[key]


async def cached_if(cache: ResultCache, deterministic: bool, key: str, compute: Callable[[], Awaitable[dict]]) -> tuple[dict, bool]:
    """Serve deterministic work through the cache; anything else is computed every time."""
    if deterministic:
        return await cache.get_or_compute(key, compute)
    return await compute(), False
