"""The simplest engine: model work runs one request at a time on a dedicated thread, so the
event loop stays free. The batching engine replaces it behind the same interface."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from app.engine.base import EngineHealth, EngineTimeout, GenerateInput, GenerateOutput, ScoredText, ScoreInput
from app.engine.lm_tasks import TokenLimits, run_generate, run_score
from app.model_store import ModelStore


class InProcessEngine:
    def __init__(self, store: ModelStore, limits: TokenLimits, timeout_s: float) -> None:
        self.store, self.limits, self.timeout_s = store, limits, timeout_s
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnnserve-model")

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def _run(self, function, *args):
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, partial(function, *args))
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as error:
            raise EngineTimeout(f"request did not finish within {self.timeout_s:g} s") from error

    async def generate(self, request: GenerateInput) -> GenerateOutput:
        return await self._run(run_generate, self.store.models[request.model_id], request, self.limits)

    async def score(self, request: ScoreInput) -> list[ScoredText]:
        return await self._run(run_score, self.store.models[request.model_id], request, self.limits)

    async def abort(self, request_id: str) -> None:
        """Nothing to abort: each request runs to completion on the model thread."""

    def health(self) -> EngineHealth:
        ready = self._executor is not None
        return EngineHealth(ready=ready, workers=[{"id": 0, "device": "in-process", "alive": ready}])
