"""The registered cells against their definitions: the peephole LSTM is nn.LSTM plus its
peepholes, the Jordan network feeds its output back; each runs in the language model."""
from __future__ import annotations

import pytest
import torch

from models.cells import CELLS, JordanCell, PeepholeLSTMCell, make_cell


def test_every_cell_is_registered_by_name():
    assert set(CELLS) == {"rnn", "gru", "lstm", "peephole", "jordan"}
    with pytest.raises(ValueError, match="cell must be one of"):
        make_cell("transformer", 4, 4)


def test_peephole_lstm_without_peepholes_is_pytorchs_lstm():
    torch.manual_seed(0)
    peephole = PeepholeLSTMCell(6, 5, num_layers=2)
    reference = torch.nn.LSTM(6, 5, num_layers=2, batch_first=True)
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            getattr(peephole, name).copy_(parameter)
        for layer in range(2):
            getattr(peephole, f"weight_ch_l{layer}").zero_()
    x = torch.randn(3, 7, 6)
    state = (torch.randn(2, 3, 5), torch.randn(2, 3, 5))
    output, new_state = peephole.run(x, state)
    expected, (h, c) = reference(x, state)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(new_state, (h, c))


def test_peepholes_read_the_previous_cell_state_for_i_f_and_the_new_one_for_o():
    torch.manual_seed(1)
    cell = PeepholeLSTMCell(3, 4)
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    w_ih, w_hh, b_ih, b_hh, peep = (getattr(cell, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ch"))
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
    i, f = torch.sigmoid(i + peep[0] * c), torch.sigmoid(f + peep[1] * c)
    c_new = f * c + i * torch.tanh(g)
    h_new = torch.sigmoid(o + peep[2] * c_new) * torch.tanh(c_new)
    output, (h_out, c_out) = cell.step(x, (h[None], c[None]))
    torch.testing.assert_close(c_out[0], c_new)
    torch.testing.assert_close(h_out[0], h_new)
    torch.testing.assert_close(output, h_new)


def test_jordan_recurrence_reads_the_previous_output_not_the_hidden_state():
    torch.manual_seed(2)
    cell = JordanCell(3, 4)
    w_ih, w_hh, b_ih, b_hh, w_hy, b_hy = (getattr(cell, f"{n}_l0") for n in
                                          ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hy", "bias_hy"))
    x = torch.randn(2, 5, 3)
    y = torch.zeros(2, 4)
    expected = []
    for t in range(5):
        h = torch.tanh(x[:, t] @ w_ih.T + b_ih + y @ w_hh.T + b_hh)
        y = torch.tanh(h @ w_hy.T + b_hy)
        expected.append(y)
    output, (state,) = cell.run(x, (torch.zeros(1, 2, 4),))
    torch.testing.assert_close(output, torch.stack(expected, dim=1))
    torch.testing.assert_close(state[0], y)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_dropout_between_layers_only_while_training(name):
    cell = make_cell(name, 4, 6, num_layers=2, dropout=0.5).eval()
    x = torch.randn(2, 3, 4)
    state = tuple(torch.zeros(2, 2, 6) for _ in range(cell.num_state_tensors))
    torch.testing.assert_close(cell.run(x, state)[0], cell.run(x, state)[0])
    cell.train()
    torch.manual_seed(0)
    first = cell.run(x, state)[0]
    torch.manual_seed(1)
    assert not torch.allclose(first, cell.run(x, state)[0])
