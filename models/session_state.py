"""A recurrent language model's whole past as a value: the state after some tokens, advanced by
more tokens, asked for its next-token distribution, and written as bytes.

A `SessionState` holds the recurrent state ((layers, H) tensors, one row of the model's
(layers, B, H) state) and the top layer's output after the last token read (D,), from which the
next token's distribution comes, so asking what comes next runs only the output layer. The
functions below take many states at once: rows of one batch for the model, each row its own
sequence, the same arithmetic as scoring the whole text (`models.scoring.score_sequences`).

Bytes are safetensors (tensors plus a string-to-string header), never a pickle: a state that
comes back from a shared store is data, parsed, not code.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from models.rnn_lm import RNNLanguageModel
from models.scoring import LOGITS_BUDGET
from models.tokenizers import CONTEXT_TOKENS

FORMAT = "rnnserve-session-state/1"


class StateFormatError(ValueError):
    """Bytes that are not a session state this code wrote."""


@dataclass
class SessionState:
    """The state after `tokens_read` tokens: `state` one (layers, H) tensor per state tensor of
    the cell, `hidden` the top layer's output after the last token (D,), `recent` the ids of the
    last tokens read (at most CONTEXT_TOKENS: what joining generated text to the past reads)."""

    state: tuple[torch.Tensor, ...]
    hidden: torch.Tensor
    tokens_read: int
    recent: list[int] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.state, self.hidden)) + 8 * len(self.recent)


def to_bytes(session: SessionState, metadata: dict[str, str] | None = None) -> bytes:
    """The state as safetensors bytes; `metadata` (strings) travels in the header."""
    tensors = {f"state.{index}": tensor.detach().to("cpu").contiguous() for index, tensor in enumerate(session.state)}
    tensors["hidden"] = session.hidden.detach().to("cpu").contiguous()
    tensors["recent"] = torch.tensor(session.recent, dtype=torch.long)
    header = dict(metadata or {}) | {"format": FORMAT, "tokens_read": str(session.tokens_read)}
    return save_tensors(tensors, metadata=header)


def from_bytes(data: bytes) -> tuple[SessionState, dict[str, str]]:
    """(state, header) of bytes written by `to_bytes`; StateFormatError for anything else."""
    try:
        tensors = load_tensors(data)
        header = _header(data)
        if header.get("format") != FORMAT:
            raise StateFormatError(f"not a session state (format {header.get('format')!r})")
        count = sum(1 for name in tensors if name.startswith("state."))
        state = tuple(tensors[f"state.{index}"] for index in range(count))
        session = SessionState(state, tensors["hidden"], int(header["tokens_read"]), tensors["recent"].tolist())
    except StateFormatError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a malformed blob raises, it is a format error
        raise StateFormatError(f"not a session state ({type(error).__name__}: {error})") from error
    if not state or any(s.dim() != 2 for s in state) or session.hidden.dim() != 1:
        raise StateFormatError("a session state's tensors have the wrong shapes")
    return session, header


def _header(data: bytes) -> dict[str, str]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]).get("__metadata__", {})


def fits(model: RNNLanguageModel, session: SessionState) -> bool:
    """Whether a state has the shapes of this model's (a state of another architecture does not)."""
    config = model.config
    width = _output_width(model)
    return (len(session.state) == model.num_state_tensors
            and all(tuple(s.shape) == (config.num_layers, config.hidden_dim) for s in session.state)
            and tuple(session.hidden.shape) == (width,))


def stack(model: RNNLanguageModel, sessions: list[SessionState]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Rows of a batch: ((layers, B, H) per state tensor, (B, D)) on the model's device."""
    weight = model.embedding.weight
    state = tuple(torch.stack([s.state[index] for s in sessions], dim=1).to(weight.device, weight.dtype)
                  for index in range(model.num_state_tensors))
    hidden = torch.stack([s.hidden for s in sessions]).to(weight.device, weight.dtype)
    return state, hidden


@torch.inference_mode()
def start(model: RNNLanguageModel, id_lists: list[list[int]]) -> list[SessionState]:
    """The state after reading each id list (at least one id each) from the initial state."""
    if any(not ids for ids in id_lists):
        raise ValueError("a session starts after at least one token")
    device = model.embedding.weight.device
    initial = tuple(s[:, 0] for s in model.init_state(1, device))
    # Read from the initial state like any later ids; its output before any token is never read.
    states = [SessionState(initial, torch.zeros(_output_width(model), device=device), 0) for _ in id_lists]
    _, advanced = advance(model, states, id_lists, score=False)
    return advanced


def _output_width(model: RNNLanguageModel) -> int:
    # A tied output layer behind a wider recurrent layer reads a projection to the embedding width.
    return model.config.embedding_dim if model.projection is not None else model.config.hidden_dim


@torch.inference_mode()
def advance(model: RNNLanguageModel, sessions: list[SessionState], id_lists: list[list[int]],
            score: bool = True) -> tuple[list[list[float]], list[SessionState]]:
    """Read `id_lists[i]` after `sessions[i]`, all rows in one packed call: the log-probability
    of each id given everything before it (natural log; empty lists when `score` is False), and
    each row's state after its ids. A row with no ids keeps its state."""
    rows = [row for row, ids in enumerate(id_lists) if ids]
    logprobs: list[list[float]] = [[] for _ in sessions]
    advanced = list(sessions)
    if not rows:
        return logprobs, advanced
    state, previous = stack(model, [sessions[row] for row in rows])
    device = previous.device
    lengths = torch.tensor([len(id_lists[row]) for row in rows])
    longest = int(lengths.max())
    padded = torch.zeros((len(rows), longest), dtype=torch.long)
    for index, row in enumerate(rows):
        padded[index, : len(id_lists[row])] = torch.tensor(id_lists[row])
    padded = padded.to(device)
    outputs, new_state = model.hidden(padded, state, lengths if len(set(lengths.tolist())) > 1 else None)  # (R, T, D)
    if score:
        # Position t is predicted from the output before it: the stored one for the first id.
        before = torch.cat([previous.unsqueeze(1), outputs[:, :-1]], dim=1)  # (R, T, D)
        valid = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)  # (R, T)
        picked = _target_logprobs(model, before[valid.to(device)], padded[valid.to(device)]).tolist()
        position = 0
        for index, row in enumerate(rows):
            count = int(lengths[index])
            logprobs[row] = picked[position : position + count]
            position += count
    last = outputs[torch.arange(len(rows), device=device), (lengths - 1).to(device)]  # (R, D)
    for index, row in enumerate(rows):
        ids = id_lists[row]
        advanced[row] = SessionState(tuple(s[:, index].clone() for s in new_state), last[index].clone(),
                                     sessions[row].tokens_read + len(ids), (sessions[row].recent + ids)[-CONTEXT_TOKENS:])
    return logprobs, advanced


def _target_logprobs(model: RNNLanguageModel, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for rows of top-layer outputs (N, D), in chunks that keep the (N, V) table
    within the scoring budget."""
    chunk = max(1, LOGITS_BUDGET // model.config.vocab_size)
    parts = [_picked(model, hidden[start : start + chunk], targets[start : start + chunk])
             for start in range(0, hidden.size(0), chunk)]
    return torch.cat(parts).float().cpu()


def _picked(model: RNNLanguageModel, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if model.adaptive is not None:
        return model.adaptive(hidden.float(), targets).output
    # As `score_sequences` computes it: the output layer, then fp32 log-softmax.
    return model.output_logits(hidden).float().log_softmax(dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)


@torch.inference_mode()
def next_logprobs(model: RNNLanguageModel, sessions: list[SessionState]) -> torch.Tensor:
    """Each row's next-token log-probabilities (B, V), natural log, on the CPU."""
    _, hidden = stack(model, sessions)
    return model.output_logits(hidden).float().log_softmax(dim=-1).cpu()


@torch.inference_mode()
def first_logprobs(model: RNNLanguageModel, sessions: list[SessionState], rows: list[int], targets: list[int]) -> list[float]:
    """log p(targets[i] | sessions[rows[i]]) for each pair: what a token costs next. Each
    session's output layer runs once however many of its tokens are asked about; an adaptive
    head runs a cluster only for the sessions asked about one of its tokens."""
    if not rows:
        return []
    _, hidden = stack(model, sessions)
    hidden = hidden.float() if model.adaptive is not None else hidden
    rows_index, targets_index = torch.tensor(rows), torch.tensor(targets)
    if model.adaptive is None:
        picked = torch.empty(len(rows))
        chunk = max(1, LOGITS_BUDGET // model.config.vocab_size)
        for start_row in range(0, hidden.size(0), chunk):
            table = model.output_logits(hidden[start_row : start_row + chunk]).float().log_softmax(dim=-1).cpu()
            mine = (rows_index >= start_row) & (rows_index < start_row + chunk)
            picked[mine] = table[rows_index[mine] - start_row, targets_index[mine]]
        return picked.tolist()
    adaptive = model.adaptive
    head = adaptive.head(hidden).log_softmax(dim=-1).cpu()  # (B, shortlist + clusters)
    picked = torch.empty(len(rows))
    short = targets_index < adaptive.shortlist_size
    picked[short] = head[rows_index[short], targets_index[short]]
    for cluster in range(adaptive.n_clusters):
        low, high = adaptive.cutoffs[cluster], adaptive.cutoffs[cluster + 1]
        mine = (targets_index >= low) & (targets_index < high)
        if not bool(mine.any()):
            continue
        needed, position = rows_index[mine].unique(return_inverse=True)
        within = adaptive.tail[cluster](hidden[needed.to(hidden.device)]).log_softmax(dim=-1).cpu()  # (U, cluster size)
        picked[mine] = head[rows_index[mine], adaptive.shortlist_size + cluster] + within[position, targets_index[mine] - low]
    return picked.tolist()


def continuation_logprobs(model: RNNLanguageModel, sessions: list[SessionState], id_lists: list[list[int]]) -> list[list[float]]:
    """log p of each id list as the continuation of its session; the sessions stay as they are."""
    scored, _ = advance(model, sessions, id_lists)
    return scored
