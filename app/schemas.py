"""HTTP request and response bodies of the v1 API.

Every request body is a `RequestModel`: unknown fields and non-finite numbers are refused,
every string is `Text` (text UTF-8 can encode), a parameter that cannot apply to the rest of
the request is refused by the model's own validator (422 naming it), and each model carries an
example that works as sent (Swagger's "Try it out" sends it). `to_sampling_params()` turns a
request into the engine's parameters."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import UploadFile
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator
from pydantic_core import PydanticCustomError

from app.limits import MAX_NO_REPEAT_NGRAM
from models.sampling import MAX_TEMPERATURE, SEED_LIMIT, InvalidParameter, SamplingParams, choice_params


def require_utf8(value: str) -> str:
    """JSON can spell a lone surrogate ("\\ud800"), which is no character: no tokenizer, cache
    key or response can encode it, so it is refused where the request is read."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise PydanticCustomError(
            "string_not_utf8", "text must be valid Unicode: character {position} is a lone surrogate ({code_point}), "
                               "which UTF-8 cannot encode",
            {"position": error.start, "code_point": f"U+{ord(value[error.start]):04X}"}) from None
    return value


# The type of every string a request carries (JSON bodies and the caption form alike).
Text = Annotated[StrictStr, AfterValidator(require_utf8)]


def examples(example: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI schema's `examples`: Swagger's "Try it out" sends the first as it is."""
    return {"examples": [example]}


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def refuse(param: str, message: str) -> InvalidParameter:
    """A parameter that cannot apply with the others: 422 naming it (app.errors reads `param`
    from a validator's error, under the location of the model that raised it)."""
    return InvalidParameter(param, message)


def is_set(value: Any, *neutral: Any) -> bool:
    """Whether a parameter asks for something: absent (None) and its neutral values (a
    temperature of 1, a top_p of 1) change nothing, so they are no conflict."""
    return value is not None and value not in neutral


def check_greedy(greedy_because: str, n: int, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, several: str = "sample with top_k or multinomial") -> None:
    """Greedy decoding (argmax, or a temperature of 0) takes the most probable token: it gives
    one output, and the sampling parameters cannot change it."""
    if n > 1:
        raise refuse("n", f"{greedy_because} gives one output, so n must be 1; for several, {several}")
    for name, value, neutral in (("temperature", temperature, (0, 1)), ("top_k", top_k, ()), ("top_p", top_p, (1,))):
        if is_set(value, *neutral):
            raise refuse(name, f"{greedy_because} takes the most probable token: {name} does not apply (it shapes what "
                               f"top_k and multinomial sample from)")


GENERATE_EXAMPLE = {"model": "wikitext2-lstm", "prompt": "The game was released in", "max_tokens": 20, "strategy": "top_k",
                    "top_k": 40, "temperature": 0.8, "seed": 1}


class GenerateRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(GENERATE_EXAMPLE))

    model: Text | None = Field(None, description="model id; the default language model when absent")
    prompt: Text = Field(min_length=1, description="text to continue")
    max_tokens: StrictInt = Field(64, ge=0, description="tokens to generate at most")
    strategy: Literal["argmax", "top_k", "multinomial"] = "multinomial"
    temperature: float | None = Field(None, ge=0, le=MAX_TEMPERATURE, description="divides the logits; 0 means argmax")
    top_k: StrictInt | None = Field(None, ge=1, description="candidates kept by top_k (default 40)")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling threshold")
    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT, description="makes sampling reproducible (and cacheable)")
    min_tokens: StrictInt = Field(0, ge=0, description="the end token is held back until this many tokens")
    stop: Text | list[Text] | None = Field(None, description="strings that end the text")
    allow_unknown: StrictBool = Field(False, description="whether <unk> may be generated")
    n: StrictInt = Field(1, ge=1, description="number of choices (argmax gives one)")
    stream: StrictBool = Field(False, description="answer with Server-Sent Events, one per token")

    @model_validator(mode="after")
    def parameters_apply(self) -> "GenerateRequest":
        # A seed stays allowed with argmax: it asks for a reproducible answer, which argmax gives.
        if self.strategy == "argmax":
            check_greedy("argmax", self.n, self.temperature, self.top_k, self.top_p)
        elif self.temperature == 0:
            check_greedy("temperature 0 (argmax)", self.n, None, self.top_k, self.top_p)
        return self

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
    model_config = ConfigDict(json_schema_extra=examples({"model": "wikitext2-lstm", "weight": 1.0}))

    model: Text = Field(description="a language model or n-gram model id")
    weight: float = Field(1.0, description="its weight: a mixture weight (linear), or what multiplies its log-probability (log-linear)")


SCORE_EXAMPLE = {"model": "wikitext2-lstm", "texts": ["The cat sat on the mat .", "The cat sat the on mat ."]}


class ScoreRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(SCORE_EXAMPLE))

    model: Text | None = Field(None, description="model id; the default language model when neither this nor `models` is given")
    models: list[WeightedModel] | None = Field(
        None, min_length=2, description="instead of `model`: models mixed per token (`interpolation`: linear), weights summing to 1")
    interpolation: Literal["linear"] | None = Field(None, description="how `models` combine: linear, p = Σ weight·p_model per token")
    texts: list[Text] | None = Field(None, min_length=1, description="raw sentences, tokenized by the model's tokenizer")
    tokens: list[list[Text]] | None = Field(
        None, min_length=1, description='pre-split tokens per sentence; "<eos>" is the end-of-sentence token'
    )
    add_bos: StrictBool = Field(True, description="condition the first token on the model's start-of-text context")
    add_eos: StrictBool = Field(True, description="also score the end-of-sentence token")
    unknown_words: Literal["spell", "unk"] = Field(
        "spell", description="a word outside a word model's vocabulary costs log p(<unk> | context) + log p_spell(word) "
                             "with the model's spelling model ('spell'; scores over all strings, comparable across sentences "
                             "with different unknown words), or log p(<unk> | context) alone ('unk')")

    @model_validator(mode="after")
    def parameters_apply(self) -> "ScoreRequest":
        if (self.texts is None) == (self.tokens is None):
            raise refuse("texts", "give exactly one of 'texts' or 'tokens'")
        if self.models is None:
            if self.interpolation is not None:
                raise refuse("interpolation", "interpolation mixes `models`: give them instead of `model`")
        else:
            if self.model is not None:
                raise refuse("model", "give `model` or `models`, not both")
            if self.interpolation != "linear":
                raise refuse("interpolation", "several models mix per token: set interpolation to 'linear' "
                                              "(or use /v1/rescore to combine them log-linearly)")
            if self.texts is None:
                raise refuse("tokens", "mixed models score `texts` (each model tokenizes them itself)")
        if not self.add_eos:
            for index, text in enumerate(self.texts or ()):
                if not text.strip():
                    raise refuse(f"texts.{index}", "empty text (with add_eos false there is no token to score)")
        return self

    def inputs(self) -> tuple[list[str] | list[list[str]], str]:
        """What is scored, and the field it came in."""
        return (self.texts, "texts") if self.texts is not None else (self.tokens, "tokens")


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


CAPTION_EXAMPLE = {"model": "flickr8k-captioner", "strategy": "beam", "beam_size": 3, "n": 2, "max_tokens": 20}


class CaptionRequest(RequestModel):
    """POST /v1/caption's multipart form: the image and the decoding parameters."""

    model_config = ConfigDict(json_schema_extra=examples(CAPTION_EXAMPLE))

    image: UploadFile = Field(description="JPEG, PNG, WebP, GIF (first frame) or BMP")
    model: Text | None = Field(None, description="captioner id; the default captioner when absent")
    strategy: Literal["beam", "argmax", "top_k", "multinomial"] = Field(
        "beam", description="beam: beam search, its n best; argmax: one greedy caption; top_k, multinomial: n samples")
    beam_size: int = Field(3, ge=1, description="beam: hypotheses kept")
    max_tokens: int = Field(20, ge=1, description="words per caption at most")
    n: int = Field(1, ge=1, description="captions: beam's n best (at most beam_size), or n samples (argmax gives one)")
    seed: int | None = Field(None, ge=0, lt=SEED_LIMIT, description="makes sampling reproducible (and cacheable)")
    temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE, description="top_k, multinomial: divides the logits; 0 means argmax")
    top_k: int | None = Field(None, ge=1, description="top_k: candidates kept (default 40); multinomial: keeps only these")
    no_repeat_ngram_size: int = Field(3, ge=0, le=MAX_NO_REPEAT_NGRAM, description="beam: no caption repeats an n-gram this long (0: off)")

    @model_validator(mode="after")
    def parameters_apply(self) -> "CaptionRequest":
        if self.strategy == "beam":
            if self.n > self.beam_size:
                raise refuse("n", "n cannot exceed beam_size (beam search returns its n best captions)")
            for name, value, neutral in (("temperature", self.temperature, (1,)), ("top_k", self.top_k, ())):
                if is_set(value, *neutral):
                    raise refuse(name, f"beam search does not sample: {name} does not apply (it shapes what top_k and "
                                       f"multinomial sample from)")
            return self
        for name in ("beam_size", "no_repeat_ngram_size"):
            if name in self.model_fields_set:
                raise refuse(name, f"{name} is a parameter of beam search, which strategy {self.strategy} is not")
        several = "use beam (its n best) or top_k/multinomial (n samples)"
        if self.strategy == "argmax":
            check_greedy("argmax", self.n, self.temperature, self.top_k, several=several)
        elif self.temperature == 0:
            check_greedy("temperature 0 (argmax)", self.n, None, self.top_k, several=several)
        return self

    def to_sampling_params(self) -> list[SamplingParams]:
        # Beam search is one search that returns its n best; the sampling strategies one draw per caption.
        return choice_params(1 if self.strategy == "beam" else self.n, self.seed, strategy=self.strategy,
                             temperature=self.temperature, top_k=self.top_k, max_tokens=self.max_tokens, min_tokens=1,
                             beam_size=self.beam_size)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "rnnserve"
    type: str
    level: str | None = None
    default: bool
    revision: str = Field(description="names the weights and the precision; cache keys include it")
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="what the model computes in: fp32, or int8 recurrent and output layers (docs/quantization.md)")
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
