"""AWD-LSTM's regularisation and NT-ASGD (training/awd.py) and the flagship script on toy sizes."""
import json

import pytest
import torch

from models.checkpoint import load_language_model
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from training import train_flagship
from training.awd import AWDLoss, AWDRegularisation, NonMonotoneAveraging, locked_dropout
from training.train_lm import main as train

NO_REGULARISATION = AWDRegularisation(0, 0, 0, 0, 0, 0)


def small_model(cell: str, tie: bool = True) -> RNNLanguageModel:
    torch.manual_seed(0)
    config = LanguageModelConfig(vocab_size=40, embedding_dim=12, hidden_dim=20, num_layers=3, cell=cell,
                                 dropout=0.0, tie_weights=tie)
    return RNNLanguageModel(config)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_layer_by_layer_without_regularisation_is_the_models_own_loss(cell):
    model = small_model(cell)
    inputs, targets = torch.randint(0, 40, (3, 9)), torch.randint(0, 40, (3, 9))
    state = tuple(torch.randn_like(s) for s in model.init_state(3))
    expected, expected_state = model.loss(inputs, targets, state)
    objective, cross_entropy, new_state = AWDLoss(model, NO_REGULARISATION)(inputs, targets, state)
    assert objective.item() == pytest.approx(expected.item(), abs=1e-6)
    assert cross_entropy.item() == pytest.approx(expected.item(), abs=1e-6)
    for got, want in zip(new_state, expected_state, strict=True):
        torch.testing.assert_close(got, want)


def test_weight_drop_changes_the_recurrence_only_in_training_and_never_the_weights():
    model = small_model("lstm")
    names = set(model.state_dict())
    before = model.rnn.weight_hh_l1.detach().clone()
    inputs, targets = torch.randint(0, 40, (4, 10)), torch.randint(0, 40, (4, 10))
    only_weight_drop = AWDLoss(model, AWDRegularisation(weight_drop=0.5, input_dropout=0, hidden_dropout=0,
                                                        output_dropout=0, activation_penalty=0, temporal_penalty=0))
    model.train()
    only_weight_drop.train()
    first, second = (only_weight_drop(inputs, targets, None)[0].item() for _ in range(2))
    assert first != second  # a new DropConnect mask per batch
    only_weight_drop.eval()
    model.eval()
    reference = model.loss(inputs, targets)[0].item()
    assert only_weight_drop(inputs, targets, None)[0].item() == pytest.approx(reference, abs=1e-6)
    assert torch.equal(model.rnn.weight_hh_l1, before) and set(model.state_dict()) == names


def test_weight_drop_reaches_the_hidden_to_hidden_gradients():
    model = small_model("lstm")
    model.train()
    loss = AWDLoss(model, AWDRegularisation())
    loss.train()
    objective, _, _ = loss(torch.randint(0, 40, (4, 10)), torch.randint(0, 40, (4, 10)), None)
    objective.backward()
    for layer in range(3):
        gradient = getattr(model.rnn, f"weight_hh_l{layer}").grad
        assert gradient is not None and gradient.abs().sum() > 0


def test_locked_dropout_keeps_one_mask_across_time():
    x = torch.ones(5, 30, 8)
    dropped = locked_dropout(x, 0.5, training=True)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # every step the same mask
    assert set(dropped.unique().tolist()) <= {0.0, 2.0} and 0 < (dropped == 0).sum() < dropped.numel()
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)


def test_penalties_add_to_the_objective_not_to_the_reported_loss():
    model = small_model("lstm")
    model.eval()
    inputs, targets = torch.randint(0, 40, (2, 6)), torch.randint(0, 40, (2, 6))
    with_penalties = AWDLoss(model, AWDRegularisation(0, 0, 0, 0, activation_penalty=2, temporal_penalty=1))
    with_penalties.train()  # penalties are a training objective; dropout is off at p = 0
    objective, cross_entropy, _ = with_penalties(inputs, targets, None)
    assert objective.item() > cross_entropy.item()
    assert cross_entropy.item() == pytest.approx(model.loss(inputs, targets)[0].item(), abs=1e-6)


@pytest.mark.parametrize("values", [{"weight_drop": 1.0}, {"input_dropout": -0.1}, {"activation_penalty": -1}])
def test_out_of_range_settings_are_refused(values):
    with pytest.raises(ValueError):
        AWDRegularisation(**values)


def test_awd_refuses_the_written_out_cells_by_name(tmp_path, tiny_corpus, capsys):
    with pytest.raises(SystemExit):
        train(["--data", str(tiny_corpus), "--cell", "peephole", "--awd", "--run-dir", str(tmp_path)])
    assert "--awd runs the fused cells" in capsys.readouterr().err


def test_nt_asgd_starts_averaging_when_validation_stops_improving_and_averages_every_step():
    model = torch.nn.Linear(2, 1, bias=False)
    averaging = NonMonotoneAveraging(nonmono=2)
    for loss in (5.0, 4.0, 3.0, 2.9):  # improving: plain SGD
        assert not averaging.after_validation(loss, model)
    assert not averaging.after_validation(3.5, model)  # worse than the best, but the best is too recent
    assert not averaging.averaging
    assert averaging.after_validation(4.1, model)  # worse than every epoch before the last two
    assert averaging.averaging
    seen = []  # the weights after each step from the trigger on, as ASGD averages them
    for value in (1.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        averaging.after_step(model)
        seen.append(model.weight.detach().clone())
    torch.testing.assert_close(averaging.model_for_evaluation(model).weight, torch.stack(seen).mean(0))
    restored = NonMonotoneAveraging()
    restored.load_state_dict(averaging.state_dict(), model)
    torch.testing.assert_close(restored.model_for_evaluation(model).weight, torch.stack(seen).mean(0))
    assert restored.valid_losses == averaging.valid_losses


def test_the_flagship_script_trains_exports_and_serves_on_toy_sizes(tmp_path, tiny_corpus):
    from tests.api.conftest import open_client

    models_dir = tmp_path / "models"
    metrics = train_flagship.main(["--data", str(tiny_corpus), "--run-dir", str(tmp_path / "run"),
                                   "--export-dir", str(models_dir / "wikitext2-awd-lstm"), "--tiny", "--lr", "1"])
    config = json.loads((models_dir / "wikitext2-awd-lstm" / "config.json").read_text())
    hyperparameters = config["provenance"]["hyperparameters"]
    assert hyperparameters["awd"] and hyperparameters["optimizer"] == "ntasgd" and hyperparameters["weight_drop"] == 0.5
    assert metrics["test_ppl"] > 0
    loaded = load_language_model(models_dir / "wikitext2-awd-lstm")
    assert loaded.model.config.tie_weights and loaded.model.projection is not None  # 24 units tied to 16
    client = open_client(models_dir)
    try:
        generated = client.post("/v1/generate", json={"model": "wikitext2-awd-lstm", "prompt": "the old man",
                                                      "max_tokens": 4, "strategy": "argmax"})
        assert generated.status_code == 200 and generated.json()["choices"][0]["tokens"]
        scored = client.post("/v1/score", json={"model": "wikitext2-awd-lstm", "texts": ["the dog sat ."]})
        assert scored.status_code == 200
    finally:
        client.__exit__(None, None, None)
