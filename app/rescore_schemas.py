"""Bodies of POST /v1/rescore: a recogniser's n-best lists in, reranked lists out."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas import RequestModel, Text, WeightedModel, examples, is_set, refuse


def timed(text: str, start: float, seconds_per_word: float) -> list[dict]:
    """Word times for the example: each word after the last."""
    return [{"word": word, "start": round(start + i * seconds_per_word, 2), "end": round(start + (i + 1) * seconds_per_word, 2)}
            for i, word in enumerate(text.split())]


EXAMPLE = {
    "models": [{"model": "recogniser-lm", "weight": 1.0}],
    "acoustic_weight": 1.0,
    "word_insertion_penalty": 0.0,
    "normalize": True,
    "score_weights": {"ctc": 0.3},
    "posterior_scale": 0.1,
    "decision": "mbr",
    "format": "ctm",
    "utterances": [{
        "id": "u1",
        "hypotheses": [
            {"text": "it is hard to wreck a nice beach", "acoustic_score": -1210.4, "scores": {"ctc": -35.2},
             "words": timed("it is hard to wreck a nice beach", 0.12, 0.21)},
            {"text": "it is hard to recognize speech", "acoustic_score": -1212.9, "scores": {"ctc": -33.8},
             "words": timed("it is hard to recognize speech", 0.12, 0.28)},
        ],
    }],
}

ScoreName = Annotated[Text, Field(min_length=1, max_length=64)]
MAX_NAMED_SCORES = 16


class WordTime(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE["utterances"][0]["hypotheses"][0]["words"][0]))

    word: Text = Field(description="the word, as the hypothesis's text has it")
    start: float = Field(ge=0, description="when the word starts, in seconds from the start of the audio")
    end: float = Field(ge=0, description="when the word ends, in seconds (not before start)")

    @model_validator(mode="after")
    def ends_after_it_starts(self) -> "WordTime":
        if self.end < self.start:
            raise refuse("end", f"a word ends at or after it starts: start {self.start:g}, end {self.end:g}")
        return self


class Hypothesis(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE["utterances"][0]["hypotheses"][0]))

    text: Text = Field(description="the hypothesis as words")
    acoustic_score: float | None = Field(None, description="the recogniser's acoustic log-likelihood (natural log); absent: 0")
    scores: dict[ScoreName, float] | None = Field(
        None, max_length=MAX_NAMED_SCORES,
        description="further scores by name (natural logs: a second acoustic model, a CTC score, ...), each multiplied by "
                    "its weight in score_weights; every hypothesis of a request carries the names score_weights weighs")
    words: list[WordTime] | None = Field(
        None, description="the words with their times, in order: the text's words split at white space (passed through "
                          "onto the chosen hypothesis's words, and needed for format ctm)")

    @model_validator(mode="after")
    def words_are_the_text(self) -> "Hypothesis":
        if self.words is not None:
            spoken, timed_words = self.text.split(), [w.word for w in self.words]
            if spoken != timed_words:
                differ = next((i for i, (a, b) in enumerate(zip(spoken, timed_words)) if a != b), min(len(spoken), len(timed_words)))
                raise refuse("words", f"words must be the text's {len(spoken)} words split at white space, in order; "
                                      f"they are {len(timed_words)} and differ from word {differ} on")
        return self


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
        if len({h.words is not None for h in self.hypotheses}) > 1:
            raise refuse("hypotheses", "give words with times for every hypothesis of an utterance, or for none")
        return self


class RescoreRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE))

    models: list[WeightedModel] | None = Field(
        None, min_length=1, description="default: the default rescoring model (RNNSERVE_DEFAULT_RESCORING_MODEL, a model of "
                                        "recogniser-form text), else the default language model, weight 1")
    acoustic_weight: float = Field(1.0, description="multiplies each hypothesis's acoustic_score")
    word_insertion_penalty: float = Field(0.0, description="added once per word (positive favours longer hypotheses)")
    normalize: bool = Field(
        True, description="put each hypothesis (and context) in the form the scoring model's training text was in before "
                          "it scores it: a model whose config.json records text_normalization 'recogniser' reads "
                          "'Mr. Smith paid $5.' as 'mister smith paid five dollars'; a model that records none reads the "
                          "text as sent. false: every model scores the text as sent. The response shows the text as sent",
        examples=[True])
    unknown_words: Literal["spell", "unk"] = Field("spell", description="how a word outside a model's vocabulary is scored "
                                                                        "(see /v1/score)")
    interpolation: Literal["loglinear", "linear"] = Field(
        "loglinear", description="loglinear: score adds weight·log p per model; linear: the models mix per token "
                                 "(p = Σ weight·p_model, weights summing to 1) and score adds lm_weight·log p_mix")
    lm_weight: float = Field(1.0, description="linear interpolation only: multiplies the mixture's log-probability")
    score_weights: dict[ScoreName, float] | None = Field(
        None, max_length=MAX_NAMED_SCORES,
        description="a weight for each named score the hypotheses carry (hypotheses[].scores); the combined score adds "
                    "Σ weight·score")
    posterior_scale: float = Field(
        1.0, gt=0, description="multiplies each combined score before the softmax over the list that gives the posteriors "
                               "(and from them the word confidences and the MBR decision); below 1 flattens them")
    decision: Literal["map", "mbr"] = Field(
        "map", description="map: best is the hypothesis with the highest score; mbr: the one with the fewest expected "
                           "word errors against the list, weighted by the posteriors. ranking is the score's order either way")
    format: Literal["json", "ctm"] = Field(
        "json", description="ctm: each result also carries the chosen hypothesis as NIST CTM lines (needs words with times)")
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
        self.check_named_scores()
        if self.format == "ctm":
            self.check_ctm()
        return self

    def check_named_scores(self) -> None:
        """Each hypothesis carries exactly the names score_weights weighs."""
        weighed = set(self.score_weights or {})
        for u, utterance in enumerate(self.utterances):
            for h, hypothesis in enumerate(utterance.hypotheses):
                carried = set(hypothesis.scores or {})
                unweighed = sorted(carried - weighed)
                if unweighed:
                    raise refuse("score_weights", f"no weight for the score {unweighed[0]!r} that "
                                                  f"utterances.{u}.hypotheses.{h}.scores carries; give it one in score_weights")
                missing = sorted(weighed - carried)
                if missing:
                    raise refuse(f"utterances.{u}.hypotheses.{h}.scores",
                                 f"the score {missing[0]!r} is missing: score_weights weighs it, so every hypothesis carries it")

    def check_ctm(self) -> None:
        for u, utterance in enumerate(self.utterances):
            if any(c.isspace() for c in utterance.id) or not utterance.id:
                raise refuse(f"utterances.{u}.id", "a CTM line's first field is the utterance id: give one without white space")
            for h, hypothesis in enumerate(utterance.hypotheses):
                if hypothesis.words is None:
                    raise refuse(f"utterances.{u}.hypotheses.{h}.words",
                                 "format ctm writes each word's start and duration: give the words with their times")


class RescoredHypothesis(BaseModel):
    text: str
    acoustic_score: float | None
    lm_logprobs: dict[str, float] = Field(description="natural-log probability of the hypothesis (start through end token) per model, "
                                                      "and under 'linear' the mixture's")
    num_words: int
    scores: dict[str, float] | None = Field(None, description="the named scores it was sent with")
    score: float = Field(description="acoustic_weight·acoustic_score + Σ score_weight·score + Σ weight·lm_logprob "
                                     "+ word_insertion_penalty·num_words")
    posterior: float = Field(description="softmax over the list of posterior_scale·score")
    expected_errors: float | None = Field(None, description="decision mbr: the expected word errors against the list "
                                                            "(Σ posterior·word edit distance)")


class RescoredWord(BaseModel):
    word: str
    confidence: float = Field(description="the posterior mass of the hypotheses that carry this word where they align to it")
    start: float | None = Field(None, description="seconds, when the hypothesis was sent with times")
    end: float | None = None


class RescoredUtterance(BaseModel):
    id: str
    best: int = Field(description="index of the chosen hypothesis: the highest score (map) or the fewest expected errors (mbr)")
    ranking: list[int] = Field(description="hypothesis indices by score, best first (the MAP order, whatever the decision)")
    words: list[RescoredWord] = Field(description="the chosen hypothesis's words with their confidences")
    ctm: str | None = Field(None, description="format ctm: the chosen words as NIST CTM lines, "
                                              "'<id> 1 <start> <duration> <word> <confidence>'")
    hypotheses: list[RescoredHypothesis] = Field(description="in the order they were sent")


class RescoreResponse(BaseModel):
    models: list[WeightedModel]
    interpolation: str
    decision: str
    results: list[RescoredUtterance]
    cached: bool
