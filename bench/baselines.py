"""Baseline engines for benchmarks, served by the same app through the engine interface.

`RecomputePrefixEngine` is the seed's approach: one request at a time, and for every new
token the whole prefix (prompt + generated so far) is run through the network again.

    uvicorn --factory bench.baselines:create_recompute_app
"""
from __future__ import annotations

import asyncio
import threading

import torch

from app.engine.base import Choice, EngineHealth, GenerateInput, GenerateOutput, ScoredText, ScoreInput
from app.engine.lm_tasks import TokenLimits, encode_prompt
from app.main import create_app
from app.settings import Settings
from models.generation import CompletionTracker
from models.registry import load_model
from models.sampling import BatchSampler


class RecomputePrefixEngine:
    def __init__(self, settings: Settings, store, metrics) -> None:
        self.settings, self.store = settings, store
        self.models: dict = {}
        self.lock = threading.Lock()  # a hand-rolled handler serves one request at a time
        self.in_flight = 0

    async def start(self) -> None:
        self.models = {model_id: load_model(info.path, "cpu") for model_id, info in self.store.models.items()}

    async def stop(self) -> None:
        pass

    def _generate(self, request: GenerateInput) -> GenerateOutput:
        loaded = self.models[request.model_id]
        limits = TokenLimits(self.settings.max_prompt_tokens, self.settings.max_score_tokens)
        encoded = encode_prompt(loaded, request.prompt, limits)
        vocab = loaded.vocab
        choices = []
        with self.lock, torch.inference_mode():
            for params in request.params:
                tracker = CompletionTracker(params, vocab, loaded.tokenizer, context=encoded.tokens)
                sampler = BatchSampler([params], len(vocab), vocab.unk_id, vocab.eos_id)
                prefix = list(encoded.ids)
                while not tracker.finished and params.max_tokens > 0:
                    logits, _ = loaded.model(torch.tensor([prefix]))  # the whole prefix, every time
                    token = int(sampler.choose(logits[:, -1], torch.tensor([len(tracker.completion.token_ids)]))[0])
                    tracker.add(token)
                    prefix.append(token)
                completion = tracker.completion
                choices.append(Choice(completion.text, completion.tokens, completion.finish_reason or "length"))
        return GenerateOutput(choices, len(encoded.tokens))

    async def generate(self, request: GenerateInput) -> GenerateOutput:
        self.in_flight += 1
        try:
            return await asyncio.to_thread(self._generate, request)
        finally:
            self.in_flight -= 1

    async def generate_stream(self, request: GenerateInput):
        raise NotImplementedError("the baseline does not stream")
        yield  # pragma: no cover

    async def score(self, request: ScoreInput) -> list[ScoredText]:
        raise NotImplementedError("the baseline does not score")

    async def abort(self, request_id: str) -> None:
        pass

    def health(self) -> EngineHealth:
        return EngineHealth(ready=bool(self.models), workers=[{"id": 0, "device": "cpu", "alive": True, "in_flight": self.in_flight}])


def create_recompute_app():
    return create_app(Settings(), engine_factory=RecomputePrefixEngine)
