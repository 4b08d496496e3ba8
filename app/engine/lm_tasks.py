"""Language-model request preparation and result shaping, run inside a worker: tokenizing
with the limits applied, and turning raw scores into response items."""
from __future__ import annotations

from dataclasses import dataclass

from app.engine.base import ScoredText, ScoreInput
from models.checkpoint import LoadedLanguageModel
from models.sampling import InvalidParameter
from models.text_encoding import EncodedText, TextScore
from models.tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenLimits:
    max_prompt_tokens: int
    max_score_tokens: int


def encode_prompt(loaded: LoadedLanguageModel, prompt: str, limits: TokenLimits) -> EncodedText:
    encoded = loaded.encode_text(prompt, add_start=True)
    if len(encoded.tokens) == 0:
        raise InvalidParameter("prompt", "prompt has no tokens")
    if len(encoded.tokens) > limits.max_prompt_tokens:
        raise InvalidParameter("prompt", f"prompt has {len(encoded.tokens)} tokens; the limit is {limits.max_prompt_tokens}")
    return encoded


def encode_score_input(loaded: LoadedLanguageModel, request: ScoreInput, limits: TokenLimits) -> list[EncodedText]:
    if request.texts is not None:
        contexts = request.contexts or [None] * len(request.texts)
        encoded = [loaded.encode_text(t, request.add_bos, request.add_eos, c) for t, c in zip(request.texts, contexts)]
        param = "texts"
    else:
        encoded = [loaded.encode_tokens(t, request.add_bos, request.add_eos) for t in request.tokens or []]
        param = "tokens"
    for index, item in enumerate(encoded):
        if len(item.ids) < 2:
            raise InvalidParameter(f"{param}.{index}", "nothing to score: give at least one token, or set add_bos")
        if len(item.ids) - 1 > limits.max_score_tokens:
            raise InvalidParameter(f"{param}.{index}", f"{len(item.ids) - 1} tokens (context included); the limit is {limits.max_score_tokens}")
    return encoded


def to_scored_text(result: TextScore, tokenizer: Tokenizer, text: str | None, top_logprobs: int = 0) -> ScoredText:
    """A response item; `text` (when the request gave text) places each token in it, and each
    token keeps its `top_logprobs` likeliest alternatives (scored with more, for a batch)."""
    score = result.score
    alternatives = None
    if top_logprobs and result.top_logprobs is not None:
        alternatives = [{token: round(value, 6) for token, value in list(position.items())[:top_logprobs]}
                        for position in result.top_logprobs]
    return ScoredText(
        tokens=result.tokens,
        token_logprobs=[round(x, 6) for x in score.token_logprobs],
        logprob=round(score.logprob, 6),
        num_tokens=score.num_tokens,
        perplexity=round(score.perplexity, 4),
        oov=result.oov,
        num_unknown=result.num_unknown,
        unknown_words=result.unknown_words,
        text_offset=None if text is None else tokenizer.offsets(text, result.tokens),
        top_logprobs=alternatives,
    )
