"""Session states (`models.session_state`): reading a sequence in pieces through a kept state
gives the log-probabilities of scoring it whole (`models.scoring.score_sequences`), for every
cell, both output heads and a tied projection; rows are independent of their batch; a state
survives its bytes, and bytes that are not a state are refused."""
from __future__ import annotations

import random

import pytest
import torch

from models.cells import CELLS
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import score_sequences
from models.session_state import (
    StateFormatError,
    advance,
    continuation_logprobs,
    fits,
    from_bytes,
    next_logprobs,
    start,
    to_bytes,
)

VOCAB = 40


def model_of(cell: str, head: str = "linear", tied: bool = False) -> RNNLanguageModel:
    torch.manual_seed(3)
    config = LanguageModelConfig(VOCAB, embedding_dim=12, hidden_dim=16 if not tied else 20, num_layers=2, cell=cell,
                                 dropout=0.0, head=head, adaptive_cutoffs=(10, 25) if head == "adaptive" else (),
                                 tie_weights=tied)
    return RNNLanguageModel(config).eval()


VARIANTS = [(cell, "linear", False) for cell in sorted(CELLS)] + [("lstm", "adaptive", False), ("gru", "linear", True)]


def pieces(sequence: list[int], rng: random.Random) -> list[list[int]]:
    cuts = sorted(rng.sample(range(1, len(sequence)), k=min(3, len(sequence) - 1)))
    return [sequence[a:b] for a, b in zip([0] + cuts, cuts + [len(sequence)])]


@pytest.mark.parametrize("cell,head,tied", VARIANTS)
def test_reading_in_pieces_equals_scoring_whole(cell, head, tied):
    model = model_of(cell, head, tied)
    rng = random.Random(5)
    sequences = [[0] + [rng.randrange(1, VOCAB) for _ in range(length)] for length in (1, 4, 9, 15)]
    whole = score_sequences(model, sequences)
    sessions = start(model, [s[:1] for s in sequences])
    chunks = [pieces(s[1:], rng) for s in sequences]
    got: list[list[float]] = [[] for _ in sequences]
    for step in range(max(len(c) for c in chunks)):
        ids = [c[step] if step < len(c) else [] for c in chunks]
        logprobs, sessions = advance(model, sessions, ids)
        for row, values in enumerate(logprobs):
            got[row] += values
    for score, values in zip(whole, got):
        assert values == pytest.approx(score.token_logprobs, abs=1e-5)
    assert [s.tokens_read for s in sessions] == [len(s) for s in sequences]


def test_one_token_at_a_time_and_the_next_distribution_agree():
    model = model_of("lstm")
    sequence = [0, 5, 9, 2, 33, 7]
    whole = score_sequences(model, [sequence])[0].token_logprobs
    session = start(model, [[0]])[0]
    for position, token in enumerate(sequence[1:]):
        distribution = next_logprobs(model, [session])[0]
        assert float(distribution[token]) == pytest.approx(whole[position], abs=1e-5)
        assert float(distribution.exp().sum()) == pytest.approx(1.0, abs=1e-4)
        _, (session,) = advance(model, [session], [[token]])


def test_rows_do_not_depend_on_their_neighbours():
    model = model_of("gru")
    rng = random.Random(2)
    base = start(model, [[0, 3, 4]])[0]
    alone, _ = advance(model, [base], [[7, 8, 9]])
    others = [start(model, [[0] + [rng.randrange(VOCAB) for _ in range(n)]])[0] for n in (1, 5, 8)]
    together, _ = advance(model, [others[0], base, others[1], others[2]], [[1], [7, 8, 9], [2, 2, 2, 2, 2], []])
    assert together[1] == pytest.approx(alone[0], abs=1e-6)
    assert together[3] == []


def test_continuations_leave_the_state_alone_and_match_advancing():
    model = model_of("lstm")
    session = start(model, [[0, 1, 2]])[0]
    candidates = [[5], [6, 7], [8, 9, 10]]
    first = next_logprobs(model, [session])[0]
    scored = continuation_logprobs(model, [session] * 3, candidates)
    for ids, values in zip(candidates, scored):
        expected, _ = advance(model, [session], [ids])
        assert values == pytest.approx(expected[0], abs=1e-5)
        assert values[0] == pytest.approx(float(first[ids[0]]), abs=1e-5)
    assert session.tokens_read == 3


def test_a_state_survives_its_bytes_and_other_bytes_are_refused():
    model = model_of("lstm")
    session = start(model, [[0, 4, 9]])[0]
    data = to_bytes(session, {"model": "m"})
    copy, header = from_bytes(data)
    assert header["model"] == "m" and copy.tokens_read == 3 and copy.recent == [0, 4, 9] and fits(model, copy)
    assert all(torch.equal(a, b) for a, b in zip(copy.state, session.state)) and torch.equal(copy.hidden, session.hidden)
    assert not fits(model_of("gru"), copy)
    for bad in (b"", b"not a state", data[:20], b"\x08\x00\x00\x00\x00\x00\x00\x00{}"):
        with pytest.raises(StateFormatError):
            from_bytes(bad)
