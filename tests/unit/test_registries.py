"""Each registry (cells, tokenizer levels, model types) against the CLI choices, configs and
schemas built on it: a kind added to a registry reaches all of them, and a list of kinds
written out anywhere else fails here."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from app.model_store import DEFAULT_SETTINGS, DEFAULT_TYPE, ModelStore, default_preferences, type_name
from app.routes.models import model_cards
from app.settings import Settings
from models.cells import CELLS, make_cell
from models.prefix_scoring import runs_as_tree, score_prefix_tree
from models.registry import MODEL_TYPES, ModelFacts
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import score_sequences
from models.tokenizers import LEVELS, TOKENIZERS, TokenizerConfig, text_start
from training import compare_cells, train_captioner, train_lm, train_ngram
from training.awd import AWDLoss, AWDRegularisation
from training.corpus import lm_tokenizer_config

PUBLIC_TYPES = {entry.public_type for entry in MODEL_TYPES.values()}
TASKS = set().union(*(entry.tasks for entry in MODEL_TYPES.values()))


class ParserCaught(Exception):
    """Raised in place of parsing, so that a CLI's main stops once its parser is built."""


def cli_option(module, flag: str, monkeypatch) -> argparse.Action:
    """The option `flag` of the parser `module.main` builds (nothing runs)."""
    caught: list[argparse.ArgumentParser] = []

    def catch(parser, *args, **kwargs):
        caught.append(parser)
        raise ParserCaught

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(ParserCaught):
        module.main([])
    return next(action for action in caught[0]._actions if flag in action.option_strings)


# Cells.

@pytest.mark.parametrize(("module", "flag"),
                         [(train_lm, "--cell"), (train_captioner, "--cell"), (compare_cells, "--cells")])
def test_every_cell_option_offers_the_registry(module, flag, monkeypatch):
    assert set(cli_option(module, flag, monkeypatch).choices) == set(CELLS)


def test_the_comparison_trains_the_cells_that_ask_for_it_in_registry_order(monkeypatch):
    default = cli_option(compare_cells, "--cells", monkeypatch).default
    assert default == [name for name, cell in CELLS.items() if cell.in_default_comparison]


@pytest.mark.parametrize("name", list(CELLS))
def test_every_registered_cell_is_a_valid_language_model_cell(name):
    cell = CELLS[name]
    assert cell.name == name and cell.title
    model = RNNLanguageModel(LanguageModelConfig(vocab_size=7, embedding_dim=4, hidden_dim=6, num_layers=2, cell=name))
    assert isinstance(model.rnn, cell)


def test_the_language_model_config_refuses_a_cell_outside_the_registry():
    with pytest.raises(ValueError, match="cell must be one of"):
        LanguageModelConfig(vocab_size=7, cell="transformer")


@pytest.mark.parametrize("name", list(CELLS))
def test_a_cells_fused_module_and_tree_layer_read_its_weights(name):
    cell = make_cell(name, 4, 6, num_layers=2)
    if cell.fused_module is not None:
        layer = cell.fused_module(6, 6, 1)
        fused = (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)
        assert [w.shape for w in cell.layer_weights(1)] == [w.shape for w in fused]
    torch.manual_seed(0)
    model = RNNLanguageModel(LanguageModelConfig(vocab_size=9, embedding_dim=4, hidden_dim=6, num_layers=2, cell=name,
                                                 dropout=0.0)).eval()
    assert runs_as_tree(model) == (cell.tree_layer is not None)
    if runs_as_tree(model):
        sequences = [[3, 5, 6, 7], [3, 5, 6, 8], [3, 5, 4]]
        for tree, flat in zip(score_prefix_tree(model, sequences), score_sequences(model, sequences)):
            assert tree.token_logprobs == pytest.approx(flat.token_logprobs, abs=1e-5)


@pytest.mark.parametrize("name", list(CELLS))
def test_awd_runs_exactly_the_fused_cells(name, monkeypatch, capsys):
    model = RNNLanguageModel(LanguageModelConfig(vocab_size=7, embedding_dim=4, hidden_dim=6, num_layers=2, cell=name))
    argv = ["--data", "corpus", "--run-dir", "run", "--cell", name, "--awd"]
    if CELLS[name].fused_module is None:
        with pytest.raises(ValueError, match="needs a fused cell"):
            AWDLoss(model, AWDRegularisation())
        with pytest.raises(SystemExit):
            train_lm.parse_args(argv)
        assert "--awd runs the fused cells" in capsys.readouterr().err
    else:
        AWDLoss(model, AWDRegularisation())
        assert train_lm.parse_args(argv).cell == name


# Tokenizer levels.

def test_the_levels_are_the_tokenizer_registry():
    assert LEVELS == tuple(TOKENIZERS)
    assert all(tokenizer.level == level and tokenizer.loss_unit for level, tokenizer in TOKENIZERS.items())


def test_train_lm_trains_every_level(monkeypatch):
    assert tuple(cli_option(train_lm, "--level", monkeypatch).choices) == LEVELS


def test_train_ngram_trains_every_level_whose_tokenizer_needs_no_learnt_file(monkeypatch):
    choices = cli_option(train_ngram, "--level", monkeypatch).choices
    assert list(choices) == [level for level, tokenizer in TOKENIZERS.items() if tokenizer.model_file_name is None]


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_has_a_language_model_tokenizer_config(level):
    config = lm_tokenizer_config(level, "plain")
    tokenizer = TOKENIZERS[level]
    assert config.start_token == config.end_token == tokenizer.boundary_token
    assert config.model_file == tokenizer.model_file_name
    assert TokenizerConfig.from_json(config.to_json()) == config
    assert text_start(config, {tokenizer.boundary_token})[0] == tokenizer.boundary_token


# Model types.

def facts_of(name: str) -> ModelFacts:
    return ModelFacts(f"{name}-model", name, None, "revision", 1, {}, Path(name), {}, None, None)


def test_v1_models_shows_every_public_type_and_names_it():
    store = ModelStore(models={f"{name}-model": facts_of(name) for name in MODEL_TYPES})
    store.choose_defaults({})
    assert {card.type for card in model_cards(store)} == PUBLIC_TYPES
    for public_type in PUBLIC_TYPES:
        assert type_name(public_type).split(" ", 1)[0] in ("a", "an")


def test_every_task_has_a_default_type_that_can_do_it():
    assert set(DEFAULT_TYPE) == TASKS
    for task, public_type in DEFAULT_TYPE.items():
        assert any(entry.public_type == public_type and task in entry.tasks for entry in MODEL_TYPES.values())


def test_the_default_settings_name_public_types():
    assert set(DEFAULT_SETTINGS) <= PUBLIC_TYPES
    assert set(default_preferences(Settings())) == set(DEFAULT_SETTINGS)

