"""HTTP request and response bodies of the v1 API. Requests forbid unknown fields and
non-finite numbers; `to_sampling_params()` turns a request into the engine's parameters."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from models.sampling import MAX_TEMPERATURE, SEED_LIMIT, SamplingParams, choice_params


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class GenerateRequest(RequestModel):
    model: StrictStr | None = Field(None, description="model id; the default language model when absent")
    prompt: StrictStr = Field(min_length=1, description="text to continue")
    max_tokens: StrictInt = Field(64, ge=0, description="tokens to generate at most")
    strategy: Literal["argmax", "top_k", "multinomial"] = "multinomial"
    temperature: float | None = Field(None, ge=0, le=MAX_TEMPERATURE, description="divides the logits; 0 means argmax")
    top_k: StrictInt | None = Field(None, ge=1, description="candidates kept by top_k (default 40)")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling threshold")
    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT, description="makes sampling reproducible (and cacheable)")
    min_tokens: StrictInt = Field(0, ge=0, description="the end token is held back until this many tokens")
    stop: StrictStr | list[StrictStr] | None = Field(None, description="strings that end the text")
    allow_unknown: StrictBool = Field(False, description="whether <unk> may be generated")
    n: StrictInt = Field(1, ge=1, description="number of choices")
    stream: StrictBool = Field(False, description="answer with Server-Sent Events, one per token")

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def to_sampling_params(self) -> list[SamplingParams]:
        """One parameter set per choice (seeds per choice: `models.sampling.choice_seeds`)."""
        base = dict(
            strategy=self.strategy,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_k=self.top_k,
            top_p=1.0 if self.top_p is None else self.top_p,
            min_tokens=self.min_tokens,
            max_tokens=self.max_tokens,
            stop=self.stop_list(),
            allow_unknown=self.allow_unknown,
        )
        return choice_params(self.n, self.seed, **base)


class GenerateChoice(BaseModel):
    index: int
    text: str
    tokens: list[str]
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class GenerateResponse(BaseModel):
    id: str
    model: str
    choices: list[GenerateChoice]
    usage: Usage
    cached: bool


class WeightedModel(RequestModel):
    model: StrictStr = Field(description="a language model or n-gram model id")
    weight: float = Field(1.0, description="its weight: a mixture weight (linear), or what multiplies its log-probability (log-linear)")


class ScoreRequest(RequestModel):
    model: StrictStr | None = None
    models: list[WeightedModel] | None = Field(
        None, min_length=2, description="instead of `model`: models mixed per token (`interpolation`: linear), weights summing to 1")
    interpolation: Literal["linear"] | None = Field(None, description="how `models` combine: linear, p = Σ weight·p_model per token")
    texts: list[StrictStr] | None = Field(None, min_length=1, description="raw sentences, tokenized by the model's tokenizer")
    tokens: list[list[StrictStr]] | None = Field(
        None, min_length=1, description='pre-split tokens per sentence; "<eos>" is the end-of-sentence token'
    )
    add_bos: StrictBool = Field(True, description="condition the first token on the model's start-of-text context")
    add_eos: StrictBool = Field(True, description="also score the end-of-sentence token")
    unknown_words: Literal["spell", "unk"] = Field(
        "spell", description="a word outside a word model's vocabulary costs log p(<unk> | context) + log p_spell(word) "
                             "with the model's spelling model ('spell'; scores over all strings, comparable across sentences "
                             "with different unknown words), or log p(<unk> | context) alone ('unk')")


class ScoreResult(BaseModel):
    tokens: list[str] = Field(description="the tokens scored, in order")
    token_logprobs: list[float] = Field(description="natural-log probability of each token given those before it")
    logprob: float = Field(description="sum of token_logprobs")
    num_tokens: int
    perplexity: float = Field(description="exp(-logprob / num_tokens)")
    oov: list[bool] = Field(description="whether each token was outside the vocabulary (an unknown word)")
    num_unknown: int = Field(description="how many tokens were unknown words")
    unknown_words: Literal["spell", "unk"] = Field(
        description="how unknown words were scored: 'spell' (<unk> plus the spelling model) or 'unk' (the <unk> token "
                    "alone: asked for, or the model has no spelling model)")
    text_offset: list[int] | None = Field(
        default=None, description="character offset in the text of each scored token (when texts were given as text)")


class ScoreResponse(BaseModel):
    model: str = Field(description="the model, or the mixed models joined by '+'")
    models: list[WeightedModel] | None = None
    results: list[ScoreResult]
    ranking: list[int] = Field(description="indices of the inputs by logprob, best first")
    cached: bool


class CaptionText(BaseModel):
    text: str
    logprob: float = Field(description="natural-log probability of the caption's tokens (and its end)")
    score: float = Field(description="what captions are ranked by: logprob / length ** 0.7, length counting the words "
                                     "and the end token (length normalisation, so longer captions are not penalised per word)")
    finished: bool = Field(description="whether the caption reached its end token (a cut-off caption ranks after every finished one)")


class CaptionResponse(BaseModel):
    model: str
    captions: list[CaptionText] = Field(description="best first: finished captions by score, then any cut off at max_tokens")
    cached: bool


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "rnnserve"
    type: str
    level: str | None = None
    default: bool
    revision: str
    parameters: int
    metrics: dict
    example_prompt: str | None = Field(None, description="a prompt that suits the model (its config.json's example_prompt)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ReloadResponse(ModelList):
    added: list[str]
    updated: list[str] = Field(description="models whose weights changed (a new revision)")
    removed: list[str]
    failed: dict[str, str] = Field(description="models that did not load, with why; the others serve")


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
