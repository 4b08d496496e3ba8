import math

import torch

from models import scoring
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import rank, score_sequences


def make_model() -> RNNLanguageModel:
    torch.manual_seed(1)
    return RNNLanguageModel(LanguageModelConfig(vocab_size=30, embedding_dim=8, hidden_dim=16, num_layers=1, dropout=0.0)).eval()


def manual_score(model, sequence):
    logits, _ = model(torch.tensor([sequence[:-1]]))
    logprobs = logits[0].log_softmax(-1)
    return [logprobs[i, t].item() for i, t in enumerate(sequence[1:])]


def test_scores_equal_the_manual_computation_and_padding_does_not_matter():
    model = make_model()
    sequences = [[3, 5, 6, 7, 8], [3, 9], [3, 10, 11]]
    scores = score_sequences(model, sequences)
    for sequence, score in zip(sequences, scores):
        expected = manual_score(model, sequence)
        assert score.num_tokens == len(sequence) - 1
        assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(score.token_logprobs, expected))
        assert math.isclose(score.logprob, sum(expected), abs_tol=1e-4)
        assert math.isclose(score.perplexity, math.exp(-sum(expected) / len(expected)), rel_tol=1e-4)


def test_windowed_scoring_matches(monkeypatch):
    model = make_model()
    sequences = [[3] + list(range(4, 29)), [3, 4, 5]]
    whole = score_sequences(model, sequences)
    monkeypatch.setattr(scoring, "LOGITS_BUDGET", 2 * 30 * 3)  # three positions per window
    windowed = score_sequences(model, sequences)
    for a, b in zip(whole, windowed):
        assert all(math.isclose(x, y, abs_tol=1e-5) for x, y in zip(a.token_logprobs, b.token_logprobs))


def test_rank_is_best_first():
    model = make_model()
    scores = score_sequences(model, [[3, 4, 5], [3, 4], [3, 4, 5, 6, 7]])
    order = rank(scores)
    assert [scores[i].logprob for i in order] == sorted((s.logprob for s in scores), reverse=True)


def test_adaptive_head_scores_equal_its_full_distribution():
    torch.manual_seed(2)
    model = RNNLanguageModel(LanguageModelConfig(vocab_size=60, embedding_dim=8, hidden_dim=16, num_layers=2, dropout=0.0,
                                                 head="adaptive", adaptive_cutoffs=(10, 30))).eval()
    sequences = [[3, 5, 40, 7, 59, 12], [3, 31], [3, 10, 11, 29]]
    for sequence, score in zip(sequences, score_sequences(model, sequences)):
        expected = manual_score(model, sequence)  # gathers from the whole normalised distribution
        assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(score.token_logprobs, expected))


def test_alternatives_come_from_the_scored_distribution(monkeypatch):
    """`top_logprobs` gives each scored position its likeliest tokens, best first, from the
    distribution the token's own log-probability comes from (windowed or not, adaptive or not)."""
    torch.manual_seed(2)
    adaptive = RNNLanguageModel(LanguageModelConfig(vocab_size=60, embedding_dim=8, hidden_dim=16, num_layers=1, dropout=0.0,
                                                    head="adaptive", adaptive_cutoffs=(10, 30))).eval()
    sequences = [[3] + list(range(4, 20)), [3, 4, 5]]
    monkeypatch.setattr(scoring, "LOGITS_BUDGET", 2 * 60 * 3)  # three positions per window
    for model in (make_model(), adaptive):
        plain = score_sequences(model, sequences)
        for sequence, score, alone in zip(sequences, score_sequences(model, sequences, top_logprobs=3), plain):
            assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(score.token_logprobs, alone.token_logprobs))
            logits, _ = model(torch.tensor([sequence[:-1]]))
            expected = logits[0].float().log_softmax(-1).topk(3, dim=-1)
            assert len(score.top_logprobs) == len(sequence) - 1
            for position, alternatives in enumerate(score.top_logprobs):
                assert [token for token, _ in alternatives] == expected.indices[position].tolist()
                assert all(math.isclose(value, wanted, abs_tol=1e-5) for (_, value), wanted in zip(alternatives, expected.values[position].tolist()))
