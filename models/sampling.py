"""Sampling parameters, batched per-row logits processors and a seeded per-row chooser.

A batch may mix rows with different strategies, temperatures, k, p and seeds. Processors are
built only when some row needs them (a batch of argmax rows runs no top-p sort), and each
holds its per-row values as tensors so one call handles the whole batch.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import torch

Strategy = Literal["argmax", "top_k", "multinomial", "beam"]
# What a batch sampler draws with, one token per row and step.
STRATEGIES: tuple[str, ...] = ("argmax", "top_k", "multinomial")
# Beam search keeps `beam_size` hypotheses per sequence and returns the best: a search over
# sequences, offered where a decoder implements it (captions), not a per-row sampler.
BEAM = "beam"


class InvalidParameter(ValueError):
    """A request parameter is out of range; `param` names it for the error body."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


SEED_LIMIT = 2**63  # seeds are signed 64-bit integers
# Beyond this a distribution is uniform to float precision; the HTTP schemas use the same bound.
MAX_TEMPERATURE = 100.0


@dataclass(frozen=True)
class SamplingParams:
    """One validated, normalised set of decoding parameters for one sequence."""

    strategy: Strategy = "multinomial"
    """argmax: the most probable token; top_k: sample among the k most probable;
    multinomial: sample from the whole (temperature-scaled, top-p-truncated) distribution;
    beam: beam search with `beam_size` hypotheses (deterministic; the sampling knobs do not apply)."""
    temperature: float = 1.0
    """Divides the logits; 0 means argmax."""
    top_k: int | None = None
    """Candidates kept by the top_k strategy (default 40); also applies to multinomial when set."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    seed: int | None = None
    """Seed of this sequence's own generator; None draws a fresh one (never cached)."""
    min_tokens: int = 0
    """The end token is masked until this many tokens were generated."""
    max_tokens: int = 64
    """Generation stops after this many tokens (finish_reason 'length')."""
    stop: tuple[str, ...] = ()
    """Generation stops before any of these strings (finish_reason 'stop')."""
    allow_unknown: bool = False
    """Whether the unknown token may be sampled."""
    beam_size: int = 1
    """Hypotheses kept by beam search."""
    _resolved_seed: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.strategy not in (*STRATEGIES, BEAM):
            raise InvalidParameter("strategy", f"strategy must be one of {', '.join((*STRATEGIES, BEAM))}")
        if self.beam_size < 1:
            raise InvalidParameter("beam_size", "beam_size must be at least 1")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)):
            raise InvalidParameter("temperature", "temperature must be a finite number")
        if not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidParameter("temperature", f"temperature must be between 0 and {MAX_TEMPERATURE:g}")
        if self.top_k is not None and self.top_k < 1:
            raise InvalidParameter("top_k", "top_k must be at least 1")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise InvalidParameter("top_p", "top_p must be in (0, 1]")
        if self.max_tokens < 0:
            raise InvalidParameter("max_tokens", "max_tokens must be non-negative")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise InvalidParameter("min_tokens", "min_tokens must be between 0 and max_tokens")
        if self.seed is not None and not 0 <= self.seed < SEED_LIMIT:
            raise InvalidParameter("seed", "seed must be between 0 and 2**63 - 1")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidParameter("stop", "stop strings must be non-empty strings")
        # Normalise: temperature 0 is argmax; argmax ignores the sampling knobs.
        if self.temperature == 0 and self.strategy not in ("argmax", BEAM):
            object.__setattr__(self, "strategy", "argmax")
        if self.strategy == "top_k" and self.top_k is None:
            object.__setattr__(self, "top_k", 40)
        if self.strategy in ("argmax", BEAM):
            object.__setattr__(self, "temperature", 1.0)
            object.__setattr__(self, "top_k", None)
            object.__setattr__(self, "top_p", 1.0)
        object.__setattr__(
            self, "_resolved_seed", self.seed if self.seed is not None else secrets.randbits(63)
        )

    @property
    def deterministic(self) -> bool:
        """argmax and seeded sampling give the same output every time."""
        return self.strategy in ("argmax", BEAM) or self.seed is not None

    def with_seed(self, seed: int) -> "SamplingParams":
        return replace(self, seed=seed)

    @property
    def resolved_seed(self) -> int:
        """The seed actually used (a fresh random one when none was given)."""
        return self._resolved_seed


class LogitsProcessor(Protocol):
    def __call__(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """logits (B, V), generated-token counts (B,) -> processed logits (B, V)."""


class TemperatureProcessor:
    """Divides each row's logits by its temperature. A temperature near 0 is the argmax limit:
    in float32 it may round to 0 or make the largest logit overflow to +inf (and softmax of
    +inf is NaN), so temperatures are held at least at float32's smallest normal number and a
    row that overflows is divided after subtracting its maximum instead, which leaves its best
    logit at 0 and every other finite or -inf."""

    def __init__(self, temperatures: list[float], device: torch.device) -> None:
        smallest = torch.finfo(torch.float32).tiny
        self.temperatures = torch.tensor(temperatures, device=device).clamp(min=smallest).unsqueeze(1)  # (B, 1)

    def __call__(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        scaled = logits / self.temperatures
        overflowing = scaled.amax(dim=-1) == math.inf  # (B,)
        if bool(overflowing.any()):
            shifted = (logits - logits.amax(dim=-1, keepdim=True)) / self.temperatures
            scaled = torch.where(overflowing.unsqueeze(1), shifted, scaled)
        return scaled


class TopKProcessor:
    """Per-row k; a row with k >= V keeps everything."""

    def __init__(self, top_ks: list[int], vocab_size: int, device: torch.device) -> None:
        self.top_ks = torch.tensor([min(k, vocab_size) for k in top_ks], device=device)
        self.max_k = int(self.top_ks.max())

    def __call__(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        top_values = logits.topk(self.max_k, dim=-1).values  # (B, max_k)
        threshold = top_values.gather(1, (self.top_ks - 1).unsqueeze(1))  # (B, 1)
        return logits.masked_fill(logits < threshold, -math.inf)


class TopPProcessor:
    def __init__(self, top_ps: list[float], device: torch.device) -> None:
        self.top_ps = torch.tensor(top_ps, device=device).unsqueeze(1)  # (B, 1)

    def __call__(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= self.top_ps
        # A top_p that rounds to 0 in float32 would drop everything; the most likely token stays.
        drop_sorted[:, 0] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return logits.masked_fill(drop, -math.inf)


class TokenBans:
    """The unknown token on rows that did not allow it, and the end token on rows that have not
    yet produced min_tokens: zeroed in a row's probabilities (the same as -inf logits, since
    sampling renormalises), so the logits need no masked copy."""

    def __init__(self, params: list[SamplingParams], unknown_id: int, end_id: int, device: torch.device) -> None:
        self.unknown_id, self.end_id = unknown_id, end_id
        self.ban_unknown = torch.tensor([not p.allow_unknown for p in params], device=device)
        self.min_tokens = torch.tensor([p.min_tokens for p in params], device=device)

    def apply(self, probabilities: torch.Tensor, generated: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Zero the banned tokens of every row, or of the rows selected by the boolean `rows`
        (then `probabilities` and `generated` hold only those rows)."""
        ban_unknown, min_tokens = (self.ban_unknown, self.min_tokens) if rows is None else (self.ban_unknown[rows], self.min_tokens[rows])
        probabilities[:, self.unknown_id].masked_fill_(ban_unknown, 0.0)
        probabilities[:, self.end_id].masked_fill_(generated < min_tokens, 0.0)


_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN, _MIX1, _MIX2 = _signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB)


def _shift_right(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 tensors (torch's >> is arithmetic)."""
    return (values >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(values: torch.Tensor) -> torch.Tensor:
    """The SplitMix64 mixer, element-wise on int64 tensors (wrapping arithmetic)."""
    z = values + _GOLDEN
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def counter_uniforms(seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) numbers, one per row, that depend only on (row seed, row counter): a
    counter-based generator, so a row draws the same numbers alone or in any batch, and a
    whole batch draws in a few vectorised operations."""
    bits = splitmix64(splitmix64(seeds) + counters)
    return _shift_right(bits, 11).double() * 2.0**-53


def _mix64(value: int) -> int:
    """SplitMix64's finaliser on a Python int (unsigned 64-bit arithmetic)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def choice_seeds(seed: int | None, n: int) -> list[int | None]:
    """The seed of each of a request's n choices. Choice 0 uses the request's seed itself, so a
    request with n = 1 samples with exactly its seed; choice i > 0 uses a seed mixed from
    (seed, i) by SplitMix64, so the choices of neighbouring seeds (1 and 2, say) are unrelated
    streams rather than the same ones shifted by one. None stays None (fresh seeds)."""
    if seed is None:
        return [None] * n
    return [seed if index == 0 else _mix64(_mix64(seed) ^ index) % SEED_LIMIT for index in range(n)]


def choice_params(n: int, seed: int | None, **fields) -> list[SamplingParams]:
    """The one way from a request to decoding parameters: a SamplingParams per choice, with
    `fields` alike and the choices' seeds (`choice_seeds`). Every endpoint builds them here, so
    they validate the same way."""
    return [SamplingParams(**fields, seed=choice_seed) for choice_seed in choice_seeds(seed, n)]


class BatchSampler:
    """Processes a batch's logits and picks one token per row. Each row samples by inverse
    CDF with its own counter-based random stream, so a seeded row gives the same tokens
    alone or inside any batch."""

    def __init__(
        self,
        params: list[SamplingParams],
        vocab_size: int,
        unknown_id: int,
        end_id: int,
        device: torch.device | str = "cpu",
    ) -> None:
        device = torch.device(device)
        self.params = params
        self.vocab_size, self.unknown_id, self.end_id, self.device = vocab_size, unknown_id, end_id, device
        self.seeds = torch.tensor([_signed(p.resolved_seed) for p in params], dtype=torch.long, device=device)
        self.draws = torch.zeros(len(params), dtype=torch.long, device=device)  # numbers drawn per row
        self.greedy = torch.tensor([p.strategy == "argmax" for p in params], device=device)
        self.all_greedy = bool(self.greedy.all())
        self.bans = TokenBans(params, unknown_id, end_id, device)
        # Whether every row's choice can be made from an adaptive head cluster by cluster:
        # argmax, or sampling from the model's own distribution (nothing reshapes it).
        self.reads_by_cluster = all(p.strategy == "argmax" or (p.strategy == "multinomial" and p.temperature == 1.0
                                                               and p.top_k is None and p.top_p == 1.0) for p in params)
        self.processors: list[LogitsProcessor] = []
        sampled = [p for p in params if p.strategy != "argmax"]
        if any(p.temperature != 1.0 for p in sampled):
            self.processors.append(TemperatureProcessor([p.temperature for p in params], device))
        if any(p.top_k is not None for p in sampled):
            self.processors.append(TopKProcessor([p.top_k or vocab_size for p in params], vocab_size, device))
        if any(p.top_p < 1.0 for p in sampled):
            self.processors.append(TopPProcessor([p.top_p for p in params], device))

    def filter(self, keep: list[int]) -> "BatchSampler":
        """The sampler for the rows `keep`, each keeping its random stream (rows leave a batch)."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        return self._with_rows([self.params[i] for i in keep], self.draws[index])

    def concatenate(self, other: "BatchSampler") -> "BatchSampler":
        """This batch's rows followed by `other`'s (rows join a running batch)."""
        return self._with_rows(self.params + other.params, torch.cat([self.draws, other.draws]))

    def _with_rows(self, params: list[SamplingParams], draws: torch.Tensor) -> "BatchSampler":
        sampler = BatchSampler(params, self.vocab_size, self.unknown_id, self.end_id, self.device)
        sampler.draws = draws.clone()
        return sampler

    def process(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        for processor in self.processors:
            logits = processor(logits, generated)
        return logits

    def probabilities(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """Each row's sampling distribution, unnormalised where tokens are banned (B, V)."""
        probabilities = self.process(logits, generated).softmax(dim=-1)
        self.bans.apply(probabilities, generated)
        return probabilities

    @torch.inference_mode()
    def choose(self, scores, generated: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """scores: logits (B, V) or a `models.next_token.NextTokenScores`; generated counts
        (B,) -> chosen token ids (B,). Rows where `active` is False (still reading their prompt)
        get an arbitrary token and keep their random stream where it is."""
        advance = ~self.greedy if active is None else ~self.greedy & active
        if not isinstance(scores, torch.Tensor):
            if scores.by_cluster and self.reads_by_cluster and max(self.unknown_id, self.end_id) < scores.shortlist_size:
                chosen = self._choose_by_cluster(scores, generated, advance)
                if chosen is not None:
                    return chosen
            scores = scores.logits
        probabilities = self.probabilities(scores, generated)
        self._settle_empty_rows(probabilities, scores, generated)
        if self.all_greedy:
            return probabilities.argmax(dim=-1)
        sampled = inverse_cdf(probabilities, counter_uniforms(self.seeds, self.draws))
        self.draws += advance.long()
        if not bool(self.greedy.any()):
            return sampled
        return torch.where(self.greedy, probabilities.argmax(dim=-1), sampled)

    def _settle_empty_rows(self, probabilities: torch.Tensor, logits: torch.Tensor, generated: torch.Tensor) -> None:
        """Rows whose processed distribution has no mass left (the only tokens a tiny temperature
        or top_p kept are banned, or the arithmetic underflowed) or is not a number take the
        limit those parameters approach: the most probable token that is not banned. In place."""
        totals = probabilities.sum(dim=-1)
        empty = ~(totals > 0)  # also true for NaN
        if not bool(empty.any()):
            return
        allowed = torch.ones_like(probabilities[empty])
        self.bans.apply(allowed, generated[empty], empty)
        fallback = logits[empty].float().nan_to_num(nan=-math.inf).masked_fill(allowed == 0, -math.inf).argmax(dim=-1)
        probabilities[empty] = 0.0
        probabilities[empty.nonzero().squeeze(1), fallback] = 1.0

    def _choose_by_cluster(self, scores, generated: torch.Tensor, advance: torch.Tensor) -> torch.Tensor | None:
        """The same choice as from the full distribution, reading the adaptive head and only the
        clusters chosen rows land in. The vocabulary is ordered [frequent words, cluster 0,
        cluster 1, ...], the head [frequent words, mass of cluster 0, mass of cluster 1, ...],
        so one uniform walks both the same way: find the head entry, and inside a cluster walk
        on with the remaining fraction of the uniform."""
        head = scores.head_probabilities()  # (B, S + C)
        self.bans.apply(head, generated)  # banned ids are frequent words (checked by the caller)
        if not bool((head.sum(dim=-1) > 0).all()):
            return None  # a row with nothing left to choose from: the full distribution settles it
        shortlist = scores.shortlist_size
        chosen = torch.empty(len(head), dtype=torch.long, device=head.device)
        greedy = self.greedy
        if bool(greedy.any()):
            chosen[greedy] = self._argmax_by_cluster(scores, head, greedy)
        sampled_rows = (~greedy).nonzero().squeeze(1)
        if len(sampled_rows):
            cumulative = head[sampled_rows].double().cumsum(dim=-1)
            total = cumulative[:, -1:]
            target = torch.minimum(counter_uniforms(self.seeds[sampled_rows], self.draws[sampled_rows]).unsqueeze(1) * total,
                                   torch.nextafter(total, torch.zeros_like(total)))
            entry = torch.searchsorted(cumulative, target, right=True).clamp_(max=cumulative.size(1) - 1)
            before = torch.where(entry > 0, cumulative.gather(1, (entry - 1).clamp(min=0)), torch.zeros_like(target))
            mass = cumulative.gather(1, entry) - before
            fraction = ((target - before) / mass).squeeze(1)
            entry = entry.squeeze(1)
            tokens = entry.clone()
            for cluster in (entry[entry >= shortlist] - shortlist).unique().tolist():
                in_cluster = (entry == shortlist + cluster).nonzero().squeeze(1)
                first, within = scores.cluster(cluster, sampled_rows[in_cluster])
                tokens[in_cluster] = first + inverse_cdf(within, fraction[in_cluster].clamp(0.0, 1.0))
            chosen[sampled_rows] = tokens
            self.draws += advance.long()
        return chosen

    @staticmethod
    def _argmax_by_cluster(scores, head: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The most probable word: a cluster can only hold it when its whole mass beats the best
        frequent word, so only those clusters are read."""
        shortlist = scores.shortlist_size
        head = head[rows]
        best_value, best = head[:, :shortlist].max(dim=-1)
        row_ids = rows.nonzero().squeeze(1)
        for cluster in range(head.size(1) - shortlist):
            contenders = (head[:, shortlist + cluster] > best_value).nonzero().squeeze(1)
            if len(contenders):
                first, within = scores.cluster(cluster, row_ids[contenders])
                value, index = within.max(dim=-1)
                value = value * head[contenders, shortlist + cluster]
                better = value > best_value[contenders]
                best_value[contenders[better]] = value[better]
                best[contenders[better]] = first + index[better]
        return best


CDF_BLOCK = 256


def inverse_cdf(probabilities: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The token at fraction `uniforms` (B,) of each row's cumulative mass: inverse-CDF
    sampling from (B, V) non-negative weights.

    In float64, so the cumulative sum is exact enough at any V, but in two levels so that no
    (B, V) float64 table is built: the masses of blocks of CDF_BLOCK tokens locate the block,
    then only that block is summed token by token. On the CPU the full table (a conversion and
    a cumulative sum over 8 MB at batch 32 of a 33k vocabulary) cost more than the whole cell
    step. A chosen token always has positive weight: the target stays below the row's total."""
    batch, vocab = probabilities.shape
    pad = -vocab % CDF_BLOCK
    blocks = torch.nn.functional.pad(probabilities, (0, pad)) if pad else probabilities
    blocks = blocks.view(batch, -1, CDF_BLOCK)
    block_cdf = blocks.sum(dim=-1, dtype=torch.float64).cumsum_(dim=-1)  # (B, blocks)
    total = block_cdf[:, -1:]
    target = torch.minimum(uniforms.unsqueeze(1) * total, torch.nextafter(total, torch.zeros_like(total)))
    block = torch.searchsorted(block_cdf, target, right=True).clamp_(max=block_cdf.size(1) - 1)  # (B, 1)
    before = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp(min=0)), torch.zeros_like(target))
    rows = torch.arange(batch, device=probabilities.device)
    within_cdf = blocks[rows, block.squeeze(1)].double().cumsum_(dim=-1)  # (B, CDF_BLOCK)
    block_total = within_cdf[:, -1:]
    # The block's own sum can round below the share the block-level table gave it.
    within = torch.minimum((target - before).clamp_(min=0), torch.nextafter(block_total, torch.zeros_like(block_total)))
    index = torch.searchsorted(within_cdf, within, right=True).clamp_(max=CDF_BLOCK - 1).squeeze(1)
    return block.squeeze(1) * CDF_BLOCK + index
