"""training.evaluate_pairs: accuracy over minimal pairs, for recurrent and n-gram models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.evaluate_pairs import PairsFileError
from training.evaluate_pairs import main as evaluate_pairs

ENGLISH_PAIRS = Path(__file__).resolve().parents[1] / "data" / "minimal_pairs.jsonl"


def grammar_pairs(path: Path) -> Path:
    """Pairs from the tiny corpus's grammar: the good sentence follows it, the bad one breaks
    its word order, so a model that learned the grammar must prefer the good one."""
    pairs = [
        ("the cat sat on the mat .", "the cat sat the on mat ."),
        ("a bird ran to the door .", "a bird ran to door the ."),
        ("my friend looked at a tree .", "my friend at looked a tree ."),
        ("the old man slept near the river .", "the old man slept near river the ."),
        ("a small child walked past the house .", "a child small walked past the house ."),
        ("the dog ran to a red car .", "the dog ran to a car red ."),
    ]
    path.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b, "kind": "order"}) + "\n" for g, b in pairs))
    return path


@pytest.mark.parametrize("model", ["tiny_model_path", "tiny_ngram_path"])
def test_models_that_learned_the_grammar_prefer_the_good_sentences(model, request, tmp_path):
    result = evaluate_pairs([str(request.getfixturevalue(model)), str(grammar_pairs(tmp_path / "pairs.jsonl")), "--group-by", "kind"])
    assert result["pairs"] == 6 and result["accuracy"] == 1.0
    assert result["by_kind"] == {"order": {"pairs": 6, "accuracy": 1.0}}


def test_swapped_pairs_score_zero(tiny_model_path, tmp_path):
    path = grammar_pairs(tmp_path / "pairs.jsonl")
    swapped = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({"sentence_good": p["sentence_bad"], "sentence_bad": p["sentence_good"]}) + "\n" for p in swapped))
    assert evaluate_pairs([str(tiny_model_path), str(path)])["accuracy"] == 0.0


def test_the_english_pairs_file_is_well_formed(tiny_ngram_path):
    result = evaluate_pairs([str(tiny_ngram_path), str(ENGLISH_PAIRS), "--group-by", "phenomenon"])
    assert result["pairs"] == 60 and len(result["by_phenomenon"]) == 7


def test_names_and_rare_words_need_the_spelling_model():
    """The shipped word model on the pairs that hinge on names and rare words: as <unk> alone
    it prefers the nonsense or the miscased name; spelling unknown words, it does not."""
    from tests.conftest import SHIPPED_MODELS

    model = str(SHIPPED_MODELS / "wikitext2-lstm")
    spell = evaluate_pairs([model, str(ENGLISH_PAIRS), "--group-by", "phenomenon"])["by_phenomenon"]["names_and_rare_words"]
    unk = evaluate_pairs([model, str(ENGLISH_PAIRS), "--group-by", "phenomenon", "--unknown-words", "unk"])["by_phenomenon"]["names_and_rare_words"]
    assert spell["accuracy"] >= 0.9 > 0.5 > unk["accuracy"]


def test_bad_files_are_refused(tiny_model_path, tmp_path):
    for content, message in (("", "no pairs"), ("{not json\n", "not JSON"), ('{"sentence_good": "a"}\n', "needs non-empty")):
        (tmp_path / "bad.jsonl").write_text(content)
        with pytest.raises(PairsFileError, match=message):
            evaluate_pairs([str(tiny_model_path), str(tmp_path / "bad.jsonl")])
