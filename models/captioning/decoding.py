"""Caption decoding, batched over images: beam search (length-normalised, n-best) and the
sampling strategies shared with the language models (argmax, top_k, multinomial)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.captioning.decoder import CaptionDecoder, DecoderState
from models.decode_loop import step_rows
from models.sampling import BatchSampler, SamplingParams

# Beam search ranks captions by logprob / length ** LENGTH_ALPHA (length counts the end token
# when the caption has one), so longer captions are not penalised for every extra word.
LENGTH_ALPHA = 0.7
# Beam search never repeats a word trigram inside a caption by default ("a black shirt and a
# black shirt"); 0 turns the block off.
NO_REPEAT_NGRAM_SIZE = 3


@dataclass
class Caption:
    token_ids: list[int]
    logprob: float  # total natural-log probability of the tokens (and <eos> when it ended)
    finished: bool

    def ranking_score(self, alpha: float = LENGTH_ALPHA) -> float:
        """The length-normalised log-probability captions are ranked by."""
        return _length_normalised(self.logprob, len(self.token_ids) + self.finished, alpha)


def _length_normalised(logprob: float, length: int, alpha: float) -> float:
    return logprob / (max(length, 1) ** alpha)


def repeated_ngram_continuations(sequence: list[int], size: int) -> set[int]:
    """Tokens that would complete an n-gram of `size` tokens already in `sequence`."""
    if size <= 0 or len(sequence) < size - 1:
        return set()
    if size == 1:
        return set(sequence)
    prefix = sequence[len(sequence) - size + 1 :]
    return {sequence[i + size - 1] for i in range(len(sequence) - size + 1) if sequence[i : i + size - 1] == prefix}


def has_repeated_ngram(sequence: list[int], size: int = NO_REPEAT_NGRAM_SIZE) -> bool:
    grams = [tuple(sequence[i : i + size]) for i in range(len(sequence) - size + 1)]
    return len(grams) != len(set(grams))


@torch.inference_mode()
def beam_search(decoder: CaptionDecoder, features: torch.Tensor, bos_id: int, eos_id: int, beam_size: int = 3,
                max_tokens: int = 20, n_best: int = 1, length_alpha: float = LENGTH_ALPHA, banned_ids: tuple[int, ...] = (),
                no_repeat_ngram_size: int = NO_REPEAT_NGRAM_SIZE) -> list[list[Caption]]:
    """For each image, the n_best captions by length-normalised log-probability, finished ones
    first; beams that never produced <eos> within max_tokens fill in (never an empty answer).
    No caption repeats an n-gram of `no_repeat_ngram_size` tokens (0: no block)."""
    batch = features.size(0)
    K = beam_size
    vocab_size = decoder.config.vocab_size
    device = features.device
    state = decoder.init_state(features).select(torch.arange(batch, device=device).repeat_interleave(K))
    tokens = torch.full((batch * K,), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, K, device=device)
    scores[:, 1:] = -float("inf")  # all beams start identical: keep one
    sequences = [[[] for _ in range(K)] for _ in range(batch)]
    finished: list[list[Caption]] = [[] for _ in range(batch)]
    for step in range(max_tokens):
        logits, state, _ = decoder.step(tokens, state)
        logprobs = logits.float().log_softmax(dim=-1)  # (B*K, V)
        for banned in banned_ids:
            logprobs[:, banned] = -float("inf")
        if step == 0:
            logprobs[:, eos_id] = -float("inf")  # an empty caption is no caption
        if no_repeat_ngram_size and step >= no_repeat_ngram_size - 1:
            for row in range(batch * K):
                repeats = repeated_ngram_continuations(sequences[row // K][row % K], no_repeat_ngram_size)
                if repeats:
                    logprobs[row, list(repeats)] = -float("inf")
        candidates = (scores.unsqueeze(2) + logprobs.view(batch, K, vocab_size)).view(batch, K * vocab_size)
        top_scores, top_index = candidates.topk(2 * K, dim=1)  # spare candidates replace finished ones
        beam_origin, token_ids = top_index // vocab_size, top_index % vocab_size
        new_scores = torch.full((batch, K), -float("inf"), device=device)
        new_tokens = torch.full((batch, K), eos_id, dtype=torch.long, device=device)
        origin = torch.zeros((batch, K), dtype=torch.long, device=device)
        new_sequences = [[[] for _ in range(K)] for _ in range(batch)]
        for b in range(batch):
            slot = 0
            for score, beam, token in zip(top_scores[b].tolist(), beam_origin[b].tolist(), token_ids[b].tolist()):
                if score == -float("inf") or slot == K:
                    break
                if token == eos_id:
                    finished[b].append(Caption(sequences[b][beam], score, True))
                    continue
                new_scores[b, slot], new_tokens[b, slot], origin[b, slot] = score, token, beam
                new_sequences[b][slot] = sequences[b][beam] + [token]
                slot += 1
        sequences, scores = new_sequences, new_scores
        # Stop an image once its best finished caption beats every live beam's best possible.
        done = [
            len(finished[b]) >= n_best
            and max(_length_normalised(c.logprob, len(c.token_ids) + 1, length_alpha) for c in finished[b])
            >= _length_normalised(float(scores[b].max()), max_tokens, length_alpha)
            for b in range(batch)
        ]
        if all(done):
            break
        index = (torch.arange(batch, device=device).unsqueeze(1) * K + origin).view(-1)
        state = state.select(index)
        tokens = new_tokens.view(-1)
    results = []
    for b in range(batch):
        pool = list(finished[b]) + [Caption(sequences[b][k], float(scores[b, k]), False) for k in range(K) if scores[b, k] > -float("inf")]
        # A caption that reached its end outranks one cut off at max_tokens (whose score lacks the
        # end token's cost); cut-off captions only fill the list when too few finished.
        pool.sort(key=lambda c: (not c.finished, -c.ranking_score(length_alpha)))
        results.append(pool[:n_best])
    return results


@dataclass
class CaptionBatch:
    """Live rows of caption sampling: the decoder's state and next-token logits and the
    sampler, row i of each belonging to the same image (the `models.decode_loop` batch)."""

    decoder: CaptionDecoder
    state: DecoderState
    logits: torch.Tensor  # (B, V)
    sampler: BatchSampler

    @classmethod
    def started(cls, decoder: CaptionDecoder, features: torch.Tensor, sampler: BatchSampler, bos_id: int) -> "CaptionBatch":
        """Rows that have read <bos> after their image."""
        batch = cls(decoder, decoder.init_state(features), features.new_empty(0), sampler)
        batch.advance(torch.full((features.size(0),), bos_id, dtype=torch.long, device=features.device))
        return batch

    def __len__(self) -> int:
        return self.logits.size(0)

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def choose(self, generated: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        return self.sampler.choose(self.logits, generated, active)

    def logprobs(self) -> torch.Tensor:
        return self.logits.float().log_softmax(dim=-1)

    def advance(self, tokens: torch.Tensor) -> None:
        self.logits, self.state, _ = self.decoder.step(tokens, self.state)

    def filter(self, keep: list[int]) -> "CaptionBatch":
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        return CaptionBatch(self.decoder, self.state.select(index), self.logits[index], self.sampler.filter(keep))


@torch.inference_mode()
def sample_captions(decoder: CaptionDecoder, features: torch.Tensor, params: list[SamplingParams], bos_id: int, eos_id: int,
                    unknown_id: int) -> list[Caption]:
    """One caption per row of `features` with that row's sampling parameters (min_tokens
    holds <eos> back: give at least 1 so that no caption is empty)."""
    outputs = [Caption([], 0.0, False) for _ in params]
    live = [row for row, p in enumerate(params) if p.max_tokens > 0]
    if not live:
        return outputs
    index = torch.tensor(live, dtype=torch.long, device=features.device)
    sampler = BatchSampler([params[row] for row in live], decoder.config.vocab_size, unknown_id, eos_id, features.device)
    batch: CaptionBatch | None = CaptionBatch.started(decoder, features[index], sampler, bos_id)

    def take(position: int, token: int, logprobs: torch.Tensor | None) -> int | None:
        row = live[position]
        caption = outputs[row]
        caption.logprob += float(logprobs[token])
        if token == eos_id:
            caption.finished = True
            return None
        caption.token_ids.append(token)
        return token if len(caption.token_ids) < params[row].max_tokens else None

    while batch is not None:
        batch, keep = step_rows(batch, [len(outputs[row].token_ids) for row in live], take, with_logprobs=True)
        live = [live[position] for position in keep]
    return outputs
