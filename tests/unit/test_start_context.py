"""A model reads every text after the context it was trained to start one from: the start
context in its config.json, or a per-level default for models exported without one."""
import json

import pytest
import torch

from models.artifacts import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, file_sha256, model_revision
from models.checkpoint import load_language_model, save_language_model
from models.registry import inspect_model
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import score_sequences
from models.tokenizers import TokenizerConfig, text_start
from models.vocab import EOS, Vocabulary

CHAR = TokenizerConfig(level="char", start_token="\n", end_token="\n")


def save_char_model(directory, start_context=None, characters="ab:\n"):
    vocab = Vocabulary.build(list(characters))
    torch.manual_seed(0)
    model = RNNLanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_dim=8, hidden_dim=12, num_layers=1,
                                                 dropout=0.0)).eval()
    tokenizer = TokenizerConfig(level="char", start_token="\n", end_token="\n", start_context=start_context)
    return save_language_model(directory, model, vocab, tokenizer)


def set_start_context(directory, start_context) -> None:
    """Edit config.json by hand, as a model's owner would (None removes the field)."""
    path = directory / CONFIG_FILE
    config = json.loads(path.read_text())
    config["tokenizer"].pop("start_context", None)
    if start_context is not None:
        config["tokenizer"]["start_context"] = start_context
    path.write_text(json.dumps(config))


def test_a_recorded_start_context_wins_and_the_defaults_follow_the_level():
    assert text_start(TokenizerConfig(level="char", start_token="\n", start_context=["\n", "\n", "\n"]), {"\n"}) == ("\n",) * 3
    assert text_start(CHAR, {"a", "\n"}) == ("\n", "\n")  # a stream of text starts its passages after a blank line
    assert text_start(CHAR, {"a"}) == ("\n",)  # no newline to read: the start token, as it always was
    assert text_start(TokenizerConfig(level="word"), {EOS, "the"}) == (EOS,)
    assert text_start(TokenizerConfig(level="sentencepiece"), {EOS}) == (EOS,)


def test_the_start_context_survives_config_json_and_keeps_the_config_hashable():
    config = TokenizerConfig(level="char", start_token="\n", end_token="\n", start_context=("\n", "\n"))
    again = TokenizerConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config and again.start_context == ("\n", "\n") and hash(again) == hash(config)
    assert "start_context" not in TokenizerConfig().to_json()  # unset: old readers see the config they know


def test_every_text_is_read_after_the_start_context_and_only_its_own_tokens_are_scored(tmp_path):
    loaded = load_language_model(save_char_model(tmp_path / "m", ["\n", "\n"]))
    newline = loaded.vocab.id("\n")
    encoded = loaded.encode_text("ab:", add_end=True)
    assert loaded.start_ids() == [newline, newline]
    assert encoded.ids[: encoded.context] == [newline, newline] and encoded.context == 2
    assert loaded.encode_tokens(["a", "b"]).ids[:2] == [newline, newline]
    assert loaded.encode_text("ab", add_start=False).ids == loaded.vocab.encode(["a", "b"])
    (result,) = loaded.score_encoded([encoded])
    assert result.tokens == ["a", "b", ":", "\n"]
    whole = score_sequences(loaded.model, [encoded.ids])[0].token_logprobs
    assert result.score.token_logprobs == pytest.approx(whole[1:])  # the second newline is history, not scored


def test_a_char_model_exported_without_one_reads_after_a_blank_line(tmp_path):
    directory = save_char_model(tmp_path / "m")
    assert "start_context" not in json.loads((directory / CONFIG_FILE).read_text())["tokenizer"]
    newline = load_language_model(directory).vocab.id("\n")
    assert load_language_model(directory).encode_text("ab").ids[:2] == [newline, newline]


def test_the_revision_covers_the_start_context_so_no_cached_score_outlives_it(tmp_path):
    directory = save_char_model(tmp_path / "m", ["\n"])
    weights = file_sha256(directory / WEIGHTS_FILE)
    assert model_revision(directory) == weights  # the start token alone: the weights name the model
    revisions = {}
    for name, start_context in (("blank line", ["\n", "\n"]), ("default", None), ("colon", ["\n", ":"])):
        set_start_context(directory, start_context)
        revisions[name] = model_revision(directory)
        assert revisions[name] != weights
        # The worker and the model listing compute it alike (a reload compares them).
        assert load_language_model(directory).revision == inspect_model(directory).revision == revisions[name]
    assert revisions["blank line"] == revisions["default"] != revisions["colon"]  # what is read, not how it is written


def test_a_word_model_directory_keeps_the_weights_as_its_revision(tmp_path):
    vocab = Vocabulary.build(["the", "cat"])
    torch.manual_seed(0)
    model = RNNLanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_dim=8, hidden_dim=12, num_layers=1)).eval()
    directory = save_language_model(tmp_path / "w", model, vocab, TokenizerConfig(level="word"))
    assert model_revision(directory) == file_sha256(directory / WEIGHTS_FILE)
    set_start_context(directory, [EOS])
    assert model_revision(directory) == file_sha256(directory / WEIGHTS_FILE)


@pytest.mark.parametrize("start_context", [[], ["\n", "z"], [3]], ids=["empty", "unknown-token", "not-a-token"])
def test_a_start_context_the_vocabulary_cannot_read_is_refused_at_load(tmp_path, start_context):
    directory = save_char_model(tmp_path / "m")
    set_start_context(directory, start_context)
    with pytest.raises(CheckpointError, match="start_context"):
        load_language_model(directory)
