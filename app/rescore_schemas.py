"""Bodies of POST /v1/rescore: a recogniser's n-best lists in, reranked lists out."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas import RequestModel, Text, WeightedModel, examples, is_set, refuse

EXAMPLE = {
    "models": [{"model": "wikitext2-lstm", "weight": 1.0}],
    "acoustic_weight": 1.0,
    "word_insertion_penalty": 0.0,
    "utterances": [{
        "id": "u1",
        "hypotheses": [
            {"text": "it is hard to wreck a nice beach", "acoustic_score": -1210.4},
            {"text": "it is hard to recognize speech", "acoustic_score": -1212.9},
        ],
    }],
}


class Hypothesis(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE["utterances"][0]["hypotheses"][0]))

    text: Text = Field(description="the hypothesis as words")
    acoustic_score: float | None = Field(None, description="the recogniser's acoustic log-likelihood (natural log); absent: 0")


class Utterance(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE["utterances"][0]))

    id: Text = Field(description="the utterance's id, echoed back")
    hypotheses: list[Hypothesis] = Field(min_length=1, description="the n-best list, usually the recogniser's order")
    context: Text | None = Field(None, description="text that came before the utterance (the previous turn): read into "
                                                   "the recurrent state before scoring, not scored itself")

    @model_validator(mode="after")
    def acoustic_scores_for_all_or_none(self) -> "Utterance":
        if len({h.acoustic_score is not None for h in self.hypotheses}) > 1:
            raise refuse("hypotheses", "give an acoustic_score for every hypothesis of an utterance, or for none")
        return self


class RescoreRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE))

    models: list[WeightedModel] | None = Field(None, min_length=1, description="default: the default language model, weight 1")
    acoustic_weight: float = Field(1.0, description="multiplies each hypothesis's acoustic_score")
    word_insertion_penalty: float = Field(0.0, description="added once per word (positive favours longer hypotheses)")
    unknown_words: Literal["spell", "unk"] = Field("spell", description="how a word outside a model's vocabulary is scored "
                                                                        "(see /v1/score)")
    interpolation: Literal["loglinear", "linear"] = Field(
        "loglinear", description="loglinear: score adds weight·log p per model; linear: the models mix per token "
                                 "(p = Σ weight·p_model, weights summing to 1) and score adds lm_weight·log p_mix")
    lm_weight: float = Field(1.0, description="linear interpolation only: multiplies the mixture's log-probability")
    utterances: list[Utterance] = Field(min_length=1)

    @model_validator(mode="after")
    def parameters_apply(self) -> "RescoreRequest":
        if self.models and len({m.model for m in self.models}) != len(self.models):
            raise refuse("models", "each model at most once")
        if self.interpolation == "linear":
            if not self.models or len(self.models) < 2:
                raise refuse("models", "linear interpolation mixes two or more models")
        elif is_set(self.lm_weight, 1):
            raise refuse("lm_weight", "lm_weight multiplies the mixture of linear interpolation; with loglinear each "
                                      "model's own weight (models[].weight) multiplies its log-probability")
        # Without acoustic scores a weight of 0 says what happens anyway (no acoustic part).
        acoustic = any(h.acoustic_score is not None for u in self.utterances for h in u.hypotheses)
        if not acoustic and is_set(self.acoustic_weight, 0, 1):
            raise refuse("acoustic_weight", "no hypothesis has an acoustic_score, so acoustic_weight does not apply")
        return self


class RescoredHypothesis(BaseModel):
    text: str
    acoustic_score: float | None
    lm_logprobs: dict[str, float] = Field(description="natural-log probability of the hypothesis (start through end token) per model, "
                                                      "and under 'linear' the mixture's")
    num_words: int
    score: float = Field(description="acoustic_weight·acoustic_score + Σ weight·lm_logprob + word_insertion_penalty·num_words")


class RescoredUtterance(BaseModel):
    id: str
    best: int = Field(description="index of the best hypothesis")
    ranking: list[int] = Field(description="hypothesis indices, best first")
    hypotheses: list[RescoredHypothesis] = Field(description="in the order they were sent")


class RescoreResponse(BaseModel):
    models: list[WeightedModel]
    interpolation: str
    results: list[RescoredUtterance]
    cached: bool
