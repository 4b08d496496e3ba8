"""Where session records live: the replica's memory (bounded in bytes, least recently used out,
each record until its expiry) and, when Redis is configured, Redis, written through on every
change with the same expiry, so that any replica continues any session and a session outlives
the replica that started it.

With Redis answering, Redis is the truth: a record it no longer has (deleted or advanced
elsewhere, expired) is not served from a copy in memory. While Redis is down, memory serves,
and records written then are kept in memory until Redis takes them again.

Each owner (API key) has limits on its live sessions and their bytes, counted where the records
are (in Redis, a hash per owner of each session's expiry and size, so every replica counts the
same)."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from app.errors import ApiError
from app.redis_client import ResilientRedis
from app.sessions.records import RecordFormatError, SessionRecord

PREFIX = "rnnserve:session:v1:"
DOWN = object()  # what a Redis call returns when Redis did not answer


@dataclass(frozen=True)
class SessionLimits:
    memory_bytes: int  # records kept in this replica's memory
    ttl_s: int  # a record lives this long after its last change
    max_per_owner: int  # live sessions per API key
    max_bytes_per_owner: int  # their state bytes


class SessionStore:
    def __init__(self, limits: SessionLimits, redis: ResilientRedis | None = None) -> None:
        self.limits, self.redis = limits, redis
        self.memory: OrderedDict[str, SessionRecord] = OrderedDict()
        self.memory_bytes = 0
        self.unsynced: set[str] = set()  # written while Redis was down
        self.ledgers: dict[str, dict[str, tuple[float, int]]] = {}  # owner -> id -> (expiry, bytes), without Redis

    # reading ------------------------------------------------------------------------------
    async def get_many(self, ids: list[str], owner: str) -> list[SessionRecord]:
        """The records of `ids`, in order; 404 naming the first that is unknown, expired or
        another owner's (the same answer for all three: an id reveals nothing)."""
        records = await self._fetch(ids)
        now = time.time()
        for index, (session_id, record) in enumerate(zip(ids, records)):
            if record is None or record.expires_at <= now or record.owner != owner:
                raise ApiError(404, f"no session {session_id!r} (unknown, expired or deleted)", "id" if len(ids) == 1 else f"items.{index}.id")
        return records

    async def existing(self, ids: list[str], owner: str) -> list[SessionRecord]:
        """The live records of `ids` that are the owner's (the others skipped)."""
        now = time.time()
        return [r for r in await self._fetch(ids) if r is not None and r.expires_at > now and r.owner == owner]

    async def _fetch(self, ids: list[str]) -> list[SessionRecord | None]:
        stored = DOWN
        if self.redis is not None:
            stored = await self.redis.call(lambda client: client.mget([PREFIX + i for i in ids]), default=DOWN)
        if stored is DOWN:
            return [self._from_memory(i) for i in ids]
        records = []
        for session_id, raw in zip(ids, stored):
            record = None
            if raw is not None:
                try:
                    record = SessionRecord.from_bytes(raw)
                except RecordFormatError:
                    record = None
            if record is None and session_id in self.unsynced:
                record = self._from_memory(session_id)
            elif record is None:
                self._forget(session_id)
            else:
                self._remember(record)
            records.append(record)
        return records

    def _from_memory(self, session_id: str) -> SessionRecord | None:
        record = self.memory.get(session_id)
        if record is not None:
            self.memory.move_to_end(session_id)
        return record

    # writing ------------------------------------------------------------------------------
    async def check_room(self, owner: str, count: int, nbytes: int) -> None:
        """429 when `count` more sessions of `nbytes` in all would pass the owner's limits."""
        live = await self._ledger(owner)
        if len(live) + count > self.limits.max_per_owner:
            raise ApiError(429, f"{len(live)} live sessions; the limit per key is {self.limits.max_per_owner} "
                                f"(delete some, or let them expire)", headers={"Retry-After": "1"})
        used = sum(size for _, size in live.values())
        if used + nbytes > self.limits.max_bytes_per_owner:
            raise ApiError(429, f"live sessions hold {used} bytes; the limit per key is {self.limits.max_bytes_per_owner}",
                           headers={"Retry-After": "1"})

    async def put_many(self, records: list[SessionRecord]) -> None:
        """Keep these records (new or changed) for another `ttl_s`."""
        if not records:
            return
        expires_at = time.time() + self.limits.ttl_s
        for record in records:
            record.expires_at = expires_at
            self._remember(record)
        if self.redis is None:
            for record in records:
                self.ledgers.setdefault(record.owner, {})[record.id] = (expires_at, record.nbytes)
            return

        async def write(client):
            pipe = client.pipeline(transaction=False)
            for record in records:
                pipe.set(PREFIX + record.id, record.to_bytes(), ex=self.limits.ttl_s)
                pipe.hset(self._ledger_key(record.owner), record.id, f"{expires_at}:{record.nbytes}")
            for owner in {record.owner for record in records}:
                pipe.expire(self._ledger_key(owner), self.limits.ttl_s)
            return await pipe.execute()

        if await self.redis.call(write, default=DOWN) is DOWN:
            self.unsynced.update(record.id for record in records)
        else:
            self.unsynced.difference_update(record.id for record in records)

    async def delete_many(self, records: list[SessionRecord]) -> None:
        for record in records:
            self._forget(record.id)
            self.ledgers.get(record.owner, {}).pop(record.id, None)
        if self.redis is not None and records:
            async def remove(client):
                pipe = client.pipeline(transaction=False)
                pipe.delete(*[PREFIX + record.id for record in records])
                for record in records:
                    pipe.hdel(self._ledger_key(record.owner), record.id)
                return await pipe.execute()

            await self.redis.call(remove)

    # memory -------------------------------------------------------------------------------
    def _remember(self, record: SessionRecord) -> None:
        self._forget(record.id, keep_sync_mark=True)
        if record.nbytes > self.limits.memory_bytes:
            return
        self.memory[record.id] = record
        self.memory_bytes += record.nbytes
        while self.memory_bytes > self.limits.memory_bytes:
            evicted = next(iter(self.memory))
            self._forget(evicted)
            if self.redis is None:  # memory was its only home
                for ledger in self.ledgers.values():
                    ledger.pop(evicted, None)

    def _forget(self, session_id: str, keep_sync_mark: bool = False) -> None:
        record = self.memory.pop(session_id, None)
        if record is not None:
            self.memory_bytes -= record.nbytes
        if not keep_sync_mark:
            self.unsynced.discard(session_id)

    # limits -------------------------------------------------------------------------------
    @staticmethod
    def _ledger_key(owner: str) -> str:
        return PREFIX + "owner:" + (owner or "anonymous")

    async def _ledger(self, owner: str) -> dict[str, tuple[float, int]]:
        """The owner's live sessions: id -> (expiry, bytes), the expired ones dropped."""
        now = time.time()
        entries = None
        if self.redis is not None:
            raw = await self.redis.call(lambda client: client.hgetall(self._ledger_key(owner)), default=DOWN)
            if raw is not DOWN:
                entries = {}
                for key, value in raw.items():
                    expiry, _, size = value.decode().partition(":")
                    entries[key.decode()] = (float(expiry), int(size))
                expired = [key for key, (expiry, _) in entries.items() if expiry <= now]
                if expired:
                    await self.redis.call(lambda client: client.hdel(self._ledger_key(owner), *expired))
        if entries is None:
            entries = self.ledgers.setdefault(owner, {})
            for key in [key for key, (expiry, _) in entries.items() if expiry <= now]:
                del entries[key]
        return {key: value for key, value in entries.items() if value[0] > now}
