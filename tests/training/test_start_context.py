"""An export records where its model starts reading a text: the context that preceded a new
passage in its training stream."""
import json

import pytest

from models.checkpoint import load_language_model
from models.tokenizers import make_tokenizer
from models.vocab import EOS
from training.corpus import CorpusFiles, lm_tokenizer_config, load_corpus, with_start_context
from training.train_lm import main as train

SPEECHES = "".join(f"{name}:\nSpeak, friend, and enter.\nThe gate is open.\n\n" for name in ["ROMEO", "JULIET", "NURSE"] * 40)
LINES = "".join(f"{name} opened the gate .\n" for name in ["romeo", "juliet", "the nurse"] * 40)


def start_context_for(tmp_path, text: str, level: str):
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    config = lm_tokenizer_config(level, "plain")
    corpus = load_corpus(CorpusFiles.find(path, 0.1), make_tokenizer(config), tokenize_raw=level == "word")
    return with_start_context(config, corpus).start_context


@pytest.mark.parametrize(("text", "level", "expected"), [
    (SPEECHES, "char", ("\n", "\n")),  # a play: every speech follows a blank line
    (LINES, "char", ("\n",)),  # one sentence per line: every sentence follows a newline
    (LINES, "word", (EOS,)),  # word models read a text after the previous line's end token
], ids=["char-passages", "char-lines", "word"])
def test_the_start_context_is_where_the_training_stream_starts_its_texts(tmp_path, text, level, expected):
    assert start_context_for(tmp_path, text, level) == expected


def test_a_char_export_records_its_start_context_and_reads_texts_after_it(tmp_path):
    (tmp_path / "play.txt").write_text(SPEECHES)
    run_dir = tmp_path / "run"
    train(["--data", str(tmp_path / "play.txt"), "--level", "char", "--embedding-dim", "8", "--hidden-dim", "16",
           "--num-layers", "1", "--batch-size", "4", "--bptt", "16", "--epochs", "1", "--max-steps", "3",
           "--run-dir", str(run_dir), "--no-progress"])
    export = run_dir / "export" / "model"
    assert json.loads((export / "config.json").read_text())["tokenizer"]["start_context"] == ["\n", "\n"]
    loaded = load_language_model(export)
    assert loaded.encode_text("ROMEO:").ids[:2] == loaded.vocab.encode(["\n", "\n"])
