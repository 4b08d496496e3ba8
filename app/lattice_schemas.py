"""Bodies of POST /v1/rescore/lattice: a recogniser's lattices in HTK SLF in, the rescored best
path, an n-best list and word confidences out."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.limits import MAX_LATTICE_NBEST, MAX_LATTICE_NGRAM_ORDER
from app.schemas import RequestModel, Text, examples
from models.lattice_rescoring import ExpansionOptions, LatticeWeights

# States further than this (in the combined score's nats) behind the best at their node are
# pruned; docs/rescoring.md#lattices shows how WER and work change with it.
DEFAULT_BEAM = 50.0

EXAMPLE_SLF = "\n".join([
    "VERSION=1.0", "UTTERANCE=u1", "lmscale=12.00", "N=10\tL=10",
    "I=0\tt=0.00", "I=1\tt=0.21", "I=2\tt=0.40", "I=3\tt=0.58", "I=4\tt=0.75",
    "I=5\tt=0.98", "I=6\tt=1.05", "I=7\tt=1.20", "I=8\tt=1.30", "I=9\tt=1.62",
    "J=0\tS=0\tE=1\tW=it\ta=-402.1\tl=-3.2", "J=1\tS=1\tE=2\tW=is\ta=-377.5\tl=-1.9",
    "J=2\tS=2\tE=3\tW=hard\ta=-350.8\tl=-5.1", "J=3\tS=3\tE=4\tW=to\ta=-288.0\tl=-1.2",
    "J=4\tS=4\tE=7\tW=recognize\ta=-812.4\tl=-9.8", "J=5\tS=7\tE=9\tW=speech\ta=-790.6\tl=-7.5",
    "J=6\tS=4\tE=5\tW=wreck\ta=-401.2\tl=-10.7", "J=7\tS=5\tE=6\tW=a\ta=-170.3\tl=-2.0",
    "J=8\tS=6\tE=8\tW=nice\ta=-452.5\tl=-6.4", "J=9\tS=8\tE=9\tW=beach\ta=-580.3\tl=-8.1",
]) + "\n"
EXAMPLE = {
    "model": "wikitext2-lstm",
    "lattices": [{"id": "u1", "slf": EXAMPLE_SLF}],
    "acoustic_weight": 1.0,
    "lm_weight": 1.0,
    "lattice_lm_weight": 0.0,
    "word_insertion_penalty": 0.0,
    "max_ngram_order": 4,
    "beam": DEFAULT_BEAM,
    "nbest": 5,
    "posterior_scale": 0.1,
}


class LatticeItem(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE["lattices"][0]))

    id: Text = Field(description="the lattice's id, echoed back")
    slf: Text = Field(min_length=1, description="one lattice in HTK Standard Lattice Format (as HTK, SRILM or Kaldi's "
                                                "utils/convert_slf.pl write it): words on links or on nodes, scores in "
                                                "the log base of its base= header (natural logs when absent)")


class LatticeRescoreRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=examples(EXAMPLE))

    model: Text | None = Field(None, description="a language model or n-gram model id; the default language model when absent")
    lattices: list[LatticeItem] = Field(min_length=1, description="the lattices to rescore")
    acoustic_weight: float = Field(1.0, description="multiplies each link's acoustic score (a=)")
    lm_weight: float = Field(1.0, description="multiplies the model's log-probability of each word (and of the end)")
    lattice_lm_weight: float = Field(0.0, description="multiplies each link's language score (l=): above 0 the lattice's "
                                                      "own language model joins the model log-linearly")
    word_insertion_penalty: float = Field(0.0, description="added once per word (positive favours longer paths)")
    unknown_words: Literal["spell", "unk"] = Field("spell", description="how a word outside the model's vocabulary is "
                                                                        "scored (see /v1/score)")
    max_ngram_order: StrictInt = Field(4, ge=1, le=MAX_LATTICE_NGRAM_ORDER,
                                       description="histories that agree in their last max_ngram_order - 1 words are "
                                                   "merged (an order beyond the longest path merges nothing: exact)")
    beam: float | None = Field(DEFAULT_BEAM, ge=0, description="expanded states further than this behind the best at "
                                                               "their node are pruned (in the combined score's natural "
                                                               "log units); null: no pruning")
    nbest: StrictInt = Field(5, ge=1, le=MAX_LATTICE_NBEST, description="distinct word sequences to return, best first")
    posterior_scale: float = Field(1.0, gt=0, description="scales the combined scores before the posteriors that give "
                                                          "the confidences (below 1 flattens them)")

    def weights(self) -> LatticeWeights:
        return LatticeWeights(self.acoustic_weight, self.lm_weight, self.lattice_lm_weight, self.word_insertion_penalty)

    def options(self, max_states: int) -> ExpansionOptions:
        return ExpansionOptions(self.max_ngram_order, self.beam, self.nbest, max_states, self.posterior_scale)


class LatticeWord(BaseModel):
    word: str
    start: float | None = Field(description="seconds: the time of the node the word starts at (null without node times)")
    end: float | None = Field(description="seconds: the time of the node the word ends at")
    confidence: float = Field(description="the posterior of the word at that time: 0 to 1")


class LatticePath(BaseModel):
    text: str
    words: list[str]
    score: float = Field(description="acoustic_weight·acoustic_score + lm_weight·lm_logprob + "
                                     "lattice_lm_weight·lattice_lm_score + word_insertion_penalty·num_words")
    acoustic_score: float = Field(description="the sum of the path's a= scores (natural log)")
    lm_logprob: float = Field(description="the model's natural-log probability of the words and the end")
    lattice_lm_score: float = Field(description="the sum of the path's l= scores (natural log)")
    num_words: int


class RescoredLatticeResult(BaseModel):
    id: str
    text: str = Field(description="the best path's words")
    score: float
    words: list[LatticeWord] = Field(description="the best path's words with their times and confidences")
    nbest: list[LatticePath] = Field(description="distinct word sequences, best first (the first is the best path)")
    expanded_states: int = Field(description="(node, history) states the expansion made")
    expanded_arcs: int
    pruned_states: int = Field(description="states the beam dropped")
    lm_queries: int = Field(description="(state, word) and end-of-text probabilities asked of the model")


class LatticeRescoreResponse(BaseModel):
    model: str
    results: list[RescoredLatticeResult]
    cached: bool
