"""Every size a request controls, in one place: built from Settings, checked by the routes
before any work (422 naming the field; 413 is for bytes and pixels, before anything is read).
Token counts, which only the worker knows once it has tokenized, are checked there through the
same object's `token_limits()`; the fixed bounds below are what the schemas declare.
What a sampling parameter may be (temperature, top_p, seeds) is `models.sampling`'s, the
schemas reuse its bounds; which parameters go together is the request models' own check."""
from __future__ import annotations

from dataclasses import dataclass

from app.engine.lm_tasks import TokenLimits
from app.errors import ApiError

# Fixed by the protocols, not settings: OpenAI's completions return at most 5 alternatives per
# token, and blocking repeated n-grams longer than 8 words in a caption blocks nothing real.
MAX_LOGPROBS = 5
MAX_NO_REPEAT_NGRAM = 8
# Lattice rescoring: an n-best list is read by a person or a reranker (a hundred is plenty), and
# an n-gram order past any utterance's length merges nothing more (the expanded states are
# bounded by max_lattice_states whatever the order).
MAX_LATTICE_NBEST = 100
MAX_LATTICE_NGRAM_ORDER = 1000


@dataclass(frozen=True)
class RequestLimits:
    max_prompt_chars: int
    max_new_tokens: int
    max_n: int
    max_stop_sequences: int
    max_caption_tokens: int
    max_beam_size: int
    max_score_texts: int
    max_rescore_utterances: int
    max_rescore_hypotheses: int
    max_rescore_hypotheses_total: int
    max_prompt_tokens: int = 4_096
    max_score_tokens: int = 4_096
    max_lattices: int = 16
    max_lattice_nodes: int = 10_000
    max_lattice_links: int = 50_000
    max_lattice_states: int = 100_000
    max_session_items: int = 1024
    max_session_candidates: int = 256
    max_session_top_k: int = 100

    @classmethod
    def from_settings(cls, settings) -> "RequestLimits":
        return cls(settings.max_prompt_chars, settings.max_new_tokens, settings.max_n, settings.max_stop_sequences,
                   settings.max_caption_tokens, settings.max_beam_size, settings.max_score_texts,
                   settings.max_rescore_utterances, settings.max_rescore_hypotheses, settings.max_rescore_hypotheses_total,
                   settings.max_prompt_tokens, settings.max_score_tokens, settings.max_lattices, settings.max_lattice_nodes,
                   settings.max_lattice_links, settings.max_lattice_states, max_session_items=settings.max_session_items,
                   max_session_candidates=settings.max_session_candidates, max_session_top_k=settings.max_session_top_k)

    def token_limits(self) -> TokenLimits:
        """The limits the worker checks after tokenizing (prompt and scored-text tokens)."""
        return TokenLimits(self.max_prompt_tokens, self.max_score_tokens)

    def check_length(self, characters: int, param: str, what: str = "prompt") -> None:
        """Any text a request sends to a model (a prompt, a text to score, a hypothesis)."""
        if characters > self.max_prompt_chars:
            raise ApiError(422, f"{what} has {characters} characters; the limit is {self.max_prompt_chars}", param)

    def check_generation(self, prompts: list[str], max_tokens: int, n: int, stop: tuple[str, ...]) -> None:
        """Prompts, each generated `n` times for up to `max_tokens` tokens, ended by `stop`."""
        if not prompts or len(prompts) > self.max_n:
            raise ApiError(422, f"prompt must be a string or a list of 1 to {self.max_n} strings", "prompt")
        for prompt in prompts:
            if not prompt:
                raise ApiError(422, "prompt must not be empty", "prompt")
            self.check_length(len(prompt), "prompt")
        if max_tokens > self.max_new_tokens:
            raise ApiError(422, f"max_tokens is limited to {self.max_new_tokens}", "max_tokens")
        if n * len(prompts) > self.max_n:
            what = "n times the number of prompts" if len(prompts) > 1 else "n"
            raise ApiError(422, f"{what} is limited to {self.max_n}", "n")
        if len(stop) > self.max_stop_sequences:
            raise ApiError(422, f"at most {self.max_stop_sequences} stop strings", "stop")

    def check_caption(self, n: int, beam_size: int, max_tokens: int) -> None:
        if n > self.max_n:
            raise ApiError(422, f"n is limited to {self.max_n}", "n")
        if beam_size > self.max_beam_size:
            raise ApiError(422, f"beam_size is limited to {self.max_beam_size}", "beam_size")
        if max_tokens > self.max_caption_tokens:
            raise ApiError(422, f"max_tokens is limited to {self.max_caption_tokens}", "max_tokens")

    def check_score(self, items: list[str] | list[list[str]], param: str) -> None:
        """Texts (or token lists) to score."""
        if len(items) > self.max_score_texts:
            raise ApiError(422, f"at most {self.max_score_texts} items per request", param)
        for index, item in enumerate(items):
            size = len(item) if isinstance(item, str) else sum(len(token) for token in item)
            self.check_length(size, f"{param}.{index}", "item")

    def check_rescore(self, utterances: list) -> None:
        """N-best lists: utterances, hypotheses per utterance and in all, each hypothesis with its context."""
        if len(utterances) > self.max_rescore_utterances:
            raise ApiError(422, f"at most {self.max_rescore_utterances} utterances per request", "utterances")
        total = 0
        for u, utterance in enumerate(utterances):
            if len(utterance.hypotheses) > self.max_rescore_hypotheses:
                raise ApiError(422, f"at most {self.max_rescore_hypotheses} hypotheses per utterance", f"utterances.{u}.hypotheses")
            for h, hypothesis in enumerate(utterance.hypotheses):
                self.check_length(len(hypothesis.text) + len(utterance.context or ""), f"utterances.{u}.hypotheses.{h}.text",
                                  "hypothesis with its context")
            total += len(utterance.hypotheses)
        if total > self.max_rescore_hypotheses_total:
            raise ApiError(422, f"at most {self.max_rescore_hypotheses_total} hypotheses per request", "utterances")

    def check_lattices(self, lattices: list) -> None:
        """Lattices per request (their nodes and links are checked as each is read, with
        `max_lattice_nodes` and `max_lattice_links`)."""
        if len(lattices) > self.max_lattices:
            raise ApiError(422, f"at most {self.max_lattices} lattices per request", "lattices")

    def check_session_items(self, count: int, texts: list[str], param: str = "items") -> None:
        """A batch of session operations, each text within the length limit."""
        if count > self.max_session_items:
            raise ApiError(422, f"at most {self.max_session_items} items per request", param)
        for index, text in enumerate(texts):
            self.check_length(len(text), f"{param}.{index}.text", "text")

    def check_next(self, top_k: int, candidates: list[str], prefix: str = "") -> None:
        """A next-token query: how many likeliest tokens, how many candidates and how long."""
        if top_k > self.max_session_top_k:
            raise ApiError(422, f"top_k is limited to {self.max_session_top_k}", prefix + "top_k")
        if len(candidates) > self.max_session_candidates:
            raise ApiError(422, f"at most {self.max_session_candidates} candidates", prefix + "candidates")
        for index, candidate in enumerate(candidates):
            self.check_length(len(candidate), f"{prefix}candidates.{index}", "candidate")
