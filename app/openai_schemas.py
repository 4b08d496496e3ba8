"""OpenAI-compatible /v1/completions bodies (the legacy completions API that ASR rescoring
and evaluation tools call)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from app.limits import MAX_LOGPROBS
from app.schemas import RequestModel, Text, check_greedy, examples, is_set, refuse
from models.sampling import MAX_TEMPERATURE, SEED_LIMIT, SamplingParams, choice_params

COMPLETION_EXAMPLE = {"model": "wikitext2-lstm", "prompt": "The game was released in", "max_tokens": 16, "temperature": 0.8,
                      "top_p": 0.95, "seed": 1}


class StreamOptions(RequestModel):
    # Fields OpenAI adds later are ignored, as its clients expect of a compatible server.
    model_config = ConfigDict(extra="ignore", json_schema_extra=examples({"include_usage": True}))
    include_usage: StrictBool = False


class CompletionRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(COMPLETION_EXAMPLE))

    model: Text | None = None
    prompt: Text | list[Text] = Field(description="a string or a list of strings (one choice set each)")
    max_tokens: StrictInt | None = Field(16, ge=0)
    temperature: float | None = Field(1.0, ge=0, le=MAX_TEMPERATURE, description="0 means argmax (then n must be 1)")
    top_p: float | None = Field(1.0, gt=0, le=1)
    n: StrictInt | None = Field(1, ge=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = Field(None, description="with stream: include_usage adds a last chunk with the usage")
    stop: Text | list[Text] | None = None
    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT)
    logprobs: StrictInt | None = Field(None, ge=0, le=MAX_LOGPROBS, description="also return log-probabilities and this many alternatives")
    echo: StrictBool | None = Field(False, description="prepend the prompt (with its logprobs when logprobs is set)")
    # Accepted for compatibility; only their neutral values are supported.
    best_of: StrictInt | None = Field(None, ge=1, le=1)
    presence_penalty: float | None = Field(None, ge=0, le=0)
    frequency_penalty: float | None = Field(None, ge=0, le=0)
    logit_bias: dict[Text, float] | None = Field(None, max_length=0)
    suffix: None = None
    user: Text | None = None

    @model_validator(mode="after")
    def parameters_apply(self) -> "CompletionRequest":
        # Temperature 0 is argmax, as in OpenAI's API; a seed stays allowed with it (OpenAI's
        # clients send one for reproducible answers, which argmax gives).
        if self.temperature == 0:
            check_greedy("temperature 0 (argmax)", self.n or 1, None, None, self.top_p,
                         several="sample with a temperature above 0")
        if is_set(self.stream_options) and not self.stream:
            raise refuse("stream_options", "stream_options applies to a streamed answer: set stream to true, or leave it out")
        if self.stream and self.echo:
            raise refuse("echo", "echo is not supported with stream")
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def to_sampling_params(self) -> list[SamplingParams]:
        """temperature 0 is argmax; otherwise multinomial with top_p, as OpenAI samples."""
        temperature = 1.0 if self.temperature is None else self.temperature
        return choice_params(self.n or 1, self.seed, strategy="argmax" if temperature == 0 else "multinomial",
                             temperature=temperature, top_p=1.0 if self.top_p is None else self.top_p,
                             max_tokens=16 if self.max_tokens is None else self.max_tokens, stop=self.stop_list())


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    cached: bool = False
