import pytest
import torch

from models.cells import CELLS
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel, count_parameters

ALL_CELLS = sorted(CELLS)


def make_model(cell="lstm", **overrides) -> RNNLanguageModel:
    torch.manual_seed(0)
    config = dict(vocab_size=50, embedding_dim=16, hidden_dim=24, num_layers=2, cell=cell, dropout=0.0)
    config.update(overrides)
    return RNNLanguageModel(LanguageModelConfig(**config)).eval()


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_token_by_token_equals_whole_sequence(cell):
    model = make_model(cell)
    tokens = torch.randint(0, 50, (3, 12))
    whole, whole_state = model(tokens)
    state = model.init_state(3)
    steps = []
    for t in range(tokens.size(1)):
        logits, state = model(tokens[:, t : t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)
    for a, b in zip(state, whole_state):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("tie", [False, True])
def test_fused_step_equals_forward(cell, tie):
    model = make_model(cell, tie_weights=tie)
    tokens = torch.randint(0, 50, (4, 9))
    whole, _ = model(tokens)
    state = model.init_state(4)
    for t in range(tokens.size(1)):
        logits, state = model.step(tokens[:, t], state)
        torch.testing.assert_close(logits, whole[:, t], atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError):
        model.train().step(tokens[:, 0], state)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_state_shapes(cell):
    model = make_model(cell)
    state = model.init_state(4)
    assert len(state) == (2 if cell in ("lstm", "peephole") else 1)
    assert all(s.shape == (2, 4, 24) for s in state)
    logits, new_state = model(torch.zeros((4, 5), dtype=torch.long), state)
    assert logits.shape == (4, 5, 50)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_packed_lengths_equal_separate_runs(cell):
    model = make_model(cell)
    rows = [torch.randint(0, 50, (n,)) for n in (7, 3, 5)]
    padded = torch.zeros((3, 7), dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    hidden, state = model.hidden(padded, lengths=torch.tensor([7, 3, 5]))
    for i, row in enumerate(rows):
        alone, alone_state = model.hidden(row.unsqueeze(0))
        torch.testing.assert_close(hidden[i, : len(row)], alone[0])
        for tensor, alone_tensor in zip(state, alone_state, strict=True):
            torch.testing.assert_close(tensor[:, i], alone_tensor[:, 0])


def test_tied_weights_share_one_tensor_with_projection():
    model = make_model(tie_weights=True)  # hidden 24 != embedding 16: a projection bridges them
    assert model.decoder.weight is model.embedding.weight
    assert model.projection is not None
    untied = make_model(tie_weights=False)
    assert count_parameters(model) < count_parameters(untied)


def test_adaptive_head_gives_a_normalised_distribution_and_matching_loss():
    model = make_model(head="adaptive", adaptive_cutoffs=(10, 30))
    tokens = torch.randint(0, 50, (2, 6))
    logits, _ = model(tokens)
    torch.testing.assert_close(logits.logsumexp(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    targets = torch.randint(0, 50, (2, 6))
    loss, _ = model.loss(tokens, targets)
    manual = torch.nn.functional.nll_loss(logits.reshape(-1, 50), targets.reshape(-1))
    torch.testing.assert_close(loss, manual)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError):
        LanguageModelConfig(vocab_size=10, cell="transformer")
    with pytest.raises(ValueError):
        LanguageModelConfig(vocab_size=10, head="adaptive", tie_weights=True)
