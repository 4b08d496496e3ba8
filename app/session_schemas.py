"""Request and response bodies of /v1/sessions: a session keeps a language model's state after
the text it has read, so a caller scores, queries and continues it without sending that text
again."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from app.schemas import RequestModel, Text, check_greedy, examples
from models.sampling import MAX_TEMPERATURE, SEED_LIMIT, SamplingParams, choice_params

UnknownWords = Literal["spell", "unk"]
UNKNOWN_WORDS = ("how a word outside a word model's vocabulary is scored: spell (<unk> plus the spelling model, so "
                 "scores are over all strings, as /v1/score) or unk (<unk> alone)")
SESSION_ID = "a session id (from POST /v1/sessions, a fork, or a score with fork)"


class SessionCreateRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples({"model": "wikitext2-lstm", "context": "The game was released in Japan ."}))

    model: Text | None = Field(None, description="a recurrent language model's id; the default language model when absent")
    context: Text | None = Field(None, description="text read before anything else, as a previous sentence (it ends with the "
                                                  "end token); the session starts after the model's start context alone when absent")


class SessionResponse(BaseModel):
    id: str = Field(description="the session's id: unguessable; send it back to use the session")
    object: Literal["session"] = "session"
    model: str
    revision: str = Field(description="the model revision the session is bound to (another one answers 409)")
    tokens_read: int = Field(description="tokens the state has read, the start context included")
    state_bytes: int = Field(description="the size of the kept state")
    expires_in_s: int = Field(description="the session is forgotten this long after its last change")


class ScoreItemFields(RequestModel):
    text: Text = Field(description="text read as the continuation of what the session has read: pieces of one text, cut at "
                                   "whitespace with the space kept at the start of the next piece, score as the whole text")
    advance: StrictBool = Field(True, description="whether the session reads the text (false: score it and leave the session as it was)")
    add_eos: StrictBool = Field(False, description="also score the end of the text (the end token) after it")
    fork: StrictBool = Field(False, description="read the text in a new session (its id is answered) and leave this one as it was")
    unknown_words: UnknownWords = Field("spell", description=UNKNOWN_WORDS)


class SessionScoreRequest(ScoreItemFields):
    model_config = ConfigDict(json_schema_extra=examples({"text": " in 2010", "advance": True}))


class SessionScoreItem(ScoreItemFields):
    model_config = ConfigDict(json_schema_extra=examples({"id": "sess_...", "text": " in 2010"}))

    id: Text = Field(description=SESSION_ID)


class SessionScoreResponse(BaseModel):
    id: str = Field(description="the session that has read the text: this one, or the fork (or this one unchanged when "
                                "advance is false)")
    model: str
    tokens: list[str]
    token_logprobs: list[float] = Field(description="natural log-probability of each token given everything before it")
    logprob: float
    num_tokens: int
    oov: list[bool]
    unknown_words: str
    tokens_read: int
    advanced: bool = Field(description="whether the session named by id has read the text")


class NextItemFields(RequestModel):
    top_k: StrictInt = Field(0, ge=0, description="the likeliest next tokens to return (0: none)")
    candidates: list[Text] = Field(default_factory=list, description="texts whose log-probability as the continuation is "
                                                                     "returned (a decoder's words); the session stays as it is")
    unknown_words: UnknownWords = Field("spell", description=UNKNOWN_WORDS)


class SessionNextRequest(NextItemFields):
    model_config = ConfigDict(json_schema_extra=examples({"top_k": 5, "candidates": [" in", " on", " at"]}))


class SessionNextItem(NextItemFields):
    model_config = ConfigDict(json_schema_extra=examples({"id": "sess_...", "candidates": [" in", " on"]}))

    id: Text = Field(description=SESSION_ID)


class TokenLogprob(BaseModel):
    token: str
    logprob: float


class CandidateScore(BaseModel):
    text: str
    tokens: list[str]
    token_logprobs: list[float]
    logprob: float
    oov: list[bool]


class SessionNextResponse(BaseModel):
    id: str
    model: str
    top: list[TokenLogprob] = Field(description="the top_k likeliest next tokens, best first")
    candidates: list[CandidateScore] = Field(description="each candidate as the continuation, in the order asked")
    end_logprob: float = Field(description="log-probability that the text ends here (the end token)")
    tokens_read: int


class SessionGenerateRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples({"max_tokens": 12, "strategy": "top_k", "top_k": 40, "seed": 1}))

    max_tokens: StrictInt = Field(64, ge=0, description="tokens to generate at most")
    strategy: Literal["argmax", "top_k", "multinomial"] = Field("multinomial", description="how each token is chosen")
    temperature: float | None = Field(None, ge=0, le=MAX_TEMPERATURE, description="divides the logits; 0 means argmax")
    top_k: StrictInt | None = Field(None, ge=1, description="candidates kept by top_k (default 40)")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling threshold")
    seed: StrictInt | None = Field(None, ge=0, lt=SEED_LIMIT, description="makes sampling reproducible")
    min_tokens: StrictInt = Field(0, ge=0, description="the end token is held back until this many tokens")
    stop: Text | list[Text] | None = Field(None, description="strings that end the text")
    allow_unknown: StrictBool = Field(False, description="whether <unk> may be generated")
    advance: StrictBool = Field(False, description="whether the session reads the generated tokens (a conversation's turn)")

    @model_validator(mode="after")
    def parameters_apply(self) -> "SessionGenerateRequest":
        if self.strategy == "argmax":
            check_greedy("argmax", 1, self.temperature, self.top_k, self.top_p)
        elif self.temperature == 0:
            check_greedy("temperature 0 (argmax)", 1, None, self.top_k, self.top_p)
        return self

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def to_sampling_params(self) -> SamplingParams:
        return choice_params(1, self.seed, strategy=self.strategy, temperature=1.0 if self.temperature is None else self.temperature,
                             top_k=self.top_k, top_p=1.0 if self.top_p is None else self.top_p, min_tokens=self.min_tokens,
                             max_tokens=self.max_tokens, stop=self.stop_list(), allow_unknown=self.allow_unknown)[0]


class SessionGenerateResponse(BaseModel):
    id: str
    model: str
    text: str = Field(description="the text the tokens add after what the session has read, separator included")
    tokens: list[str]
    finish_reason: Literal["stop", "length"]
    tokens_read: int
    advanced: bool


class SessionBatchScoreRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples({"items": [{"id": "sess_...", "text": " in 2010"}]}))

    items: list[SessionScoreItem] = Field(min_length=1, description="texts to score (and read) in many sessions at once")


class SessionBatchScoreResponse(BaseModel):
    results: list[SessionScoreResponse]


class SessionBatchNextRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples({"items": [{"id": "sess_...", "candidates": [" in", " on"]}]}))

    items: list[SessionNextItem] = Field(min_length=1, description="next-token queries of many sessions at once")


class SessionBatchNextResponse(BaseModel):
    results: list[SessionNextResponse]


class SessionBatchDeleteRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples({"ids": ["sess_..."]}))

    ids: list[Text] = Field(min_length=1, description="sessions to forget (unknown ones are skipped)")


class SessionDeleted(BaseModel):
    deleted: list[str] = Field(description="the ids forgotten")
