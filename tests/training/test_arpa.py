"""ARPA n-gram files in and out, checked against KenLM itself (the `kenlm` module reading the
same file): the same sentence log-probabilities (log10 there, natural log here)."""
import json
import logging
import math

import pytest

from models.registry import load_model
from models.spelling import SPELLING_FILE
from models.vocab import Vocabulary
from training.arpa import ArpaError, read_arpa
from training.import_arpa import ARPA_SPECIALS
from training.import_arpa import main as import_arpa
from training.spelling import DEFAULT_ORDER, attach_spelling, supported_order
from training.train_ngram import main as train_ngram

kenlm = pytest.importorskip("kenlm", reason="make test installs kenlm (a dev dependency)")

# Back-off weights at every order below the top, an unknown word, and sentences that back off
# once and twice ("cat sat mat": no "cat sat mat", no "sat mat": bow(cat sat) + bow(sat) + p(mat)).
SMALL_ARPA = """\\data\\
ngram 1=7
ngram 2=6
ngram 3=2

\\1-grams:
-99\t<s>\t-0.30
-1.2\t</s>
-2.0\t<unk>
-0.8\tthe\t-0.40
-1.1\tcat\t-0.20
-1.3\tsat\t-0.25
-1.4\tmat\t-0.10

\\2-grams:
-0.3\t<s> the\t-0.20
-0.5\tthe cat\t-0.15
-0.4\tcat sat\t-0.10
-0.6\tsat </s>
-0.7\tthe mat\t-0.05
-0.9\tmat </s>

\\3-grams:
-0.2\t<s> the cat
-0.25\tthe cat sat

\\end\\
"""
SENTENCES = ["the cat sat", "the mat", "cat sat mat", "the dog sat", "mat the cat sat the mat", "sat", "dog"]


def our_logprobs(model_dir, sentences):
    loaded = load_model(model_dir)
    encoded = [loaded.encode_text(s, add_start=True, add_end=True) for s in sentences]
    return [r.score.logprob for r in loaded.score_encoded(encoded, "unk")]


def kenlm_logprobs(arpa_path, sentences):
    model = kenlm.Model(str(arpa_path))
    return [model.score(s, bos=True, eos=True) * math.log(10) for s in sentences]


def test_an_imported_file_scores_as_kenlm_scores_it(tmp_path):
    path = tmp_path / "small.arpa"
    path.write_text(SMALL_ARPA)
    summary = import_arpa([str(path), "--output", str(tmp_path / "small"), "--spelling-order", "0"])
    assert summary["order"] == 3 and summary["ngrams"] == 7 + 6 + 2 + 1  # <pad> added
    ours, theirs = our_logprobs(tmp_path / "small", SENTENCES), kenlm_logprobs(path, SENTENCES)
    assert ours == pytest.approx(theirs, abs=1e-4)
    # By hand, "cat sat mat": cat | <s> = bow(<s>) + p(cat); sat | <s> cat = p(cat sat) (no
    # context "<s> cat": no back-off weight); mat | cat sat backs off twice = bow(cat sat) +
    # bow(sat) + p(mat); </s> | sat mat = p(mat </s>).
    log10 = (-0.30 + -1.1) + -0.4 + (-0.10 + -0.25 + -1.4) + -0.9
    assert ours[2] == pytest.approx(log10 * math.log(10), abs=1e-4)


def test_a_compressed_file_and_a_missing_unk(tmp_path):
    import gzip

    text = SMALL_ARPA.replace("ngram 1=7", "ngram 1=6").replace("-2.0\t<unk>\n", "")
    path = tmp_path / "no-unk.arpa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    import_arpa([str(path), "--output", str(tmp_path / "m"), "--spelling-order", "0"])
    assert our_logprobs(tmp_path / "m", SENTENCES) == pytest.approx(kenlm_logprobs(path, SENTENCES), abs=1e-4)


def test_a_trained_model_written_as_arpa_scores_the_same_in_kenlm_and_here(tiny_corpus, tmp_path):
    arpa = tmp_path / "tiny.arpa"
    train_ngram(["--data", str(tiny_corpus), "--order", "3", "--output", str(tmp_path / "tiny-kn3"), "--arpa", str(arpa)])
    sentences = ["the cat sat on the mat .", "a bird ran to the river .", "the dog looked at a red car .", "mat the on ."]
    native = our_logprobs(tmp_path / "tiny-kn3", sentences)
    assert native == pytest.approx(kenlm_logprobs(arpa, sentences), abs=1e-4)
    # Imported back, the file scores the same again (now with <s> and </s> as its boundaries).
    import_arpa([str(arpa), "--output", str(tmp_path / "reimported"), "--spelling-order", "0"])
    assert our_logprobs(tmp_path / "reimported", sentences) == pytest.approx(native, abs=1e-4)


@pytest.mark.parametrize("text, message", [
    ("no data here\n", "no \\\\data\\\\ section"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n\n\\end\\\n", "1 1-grams, the header says 2"),
    ("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n\n\\2-grams:\n-1\t<s> cat\n\n\\end\\\n", "'cat' is not a unigram"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t<s>\n\n\\end\\\n", "needs the unigrams"),
])
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(ArpaError, match=message):
        read_arpa(path)


# Files whose vocabularies are too small for the default 5-gram spelling model: the rarer half of
# "yes no ok" is "ok" alone ("#ok#", 4 characters: a trigram at most); of "i go up on", "on up"
# (no spelling with its boundaries longer than 4).
TINY_BIGRAM_ARPA = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-99\t<s>\t-0.3
-0.7\t</s>
-1.5\t<unk>
-0.6\tyes\t-0.2
-0.8\tno\t-0.2
-1.0\tok

\\2-grams:
-0.2\t<s> yes
-0.3\t<s> no
-0.4\tyes </s>
-0.5\tno </s>

\\end\\
"""
TINY_TRIGRAM_ARPA = """\\data\\
ngram 1=7
ngram 2=5
ngram 3=2

\\1-grams:
-99\t<s>\t-0.4
-0.9\t</s>
-1.8\t<unk>
-0.5\ti\t-0.3
-0.7\tgo\t-0.2
-1.0\tup\t-0.1
-1.2\ton

\\2-grams:
-0.2\t<s> i\t-0.1
-0.3\ti go\t-0.15
-0.4\tgo up
-0.5\tup </s>
-0.6\tgo on

\\3-grams:
-0.1\t<s> i go
-0.2\ti go up

\\end\\
"""


@pytest.mark.parametrize("text, known, spelling_order", [
    (TINY_BIGRAM_ARPA, ["yes", "no", "ok yes", "no no ok"], 3),
    (TINY_TRIGRAM_ARPA, ["i go up", "i go on", "go up", "on i"], 4),
], ids=["bigram", "trigram"])
def test_a_tiny_file_imports_with_the_spelling_model_its_words_support(tmp_path, caplog, text, known, spelling_order):
    path = tmp_path / "tiny.arpa"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="training.spelling"):
        import_arpa([str(path), "--output", str(tmp_path / "tiny")])  # the default spelling order
    said = [r.getMessage() for r in caplog.records if r.name == "training.spelling"]
    assert len(said) == 1 and f"order {spelling_order}, not {DEFAULT_ORDER}" in said[0]
    spelling = json.loads((tmp_path / "tiny" / "config.json").read_text())["spelling"]
    assert (spelling["order"], spelling["requested_order"]) == (spelling_order, DEFAULT_ORDER)
    loaded = load_model(tmp_path / "tiny")
    assert loaded.spelling.ngram.order == spelling_order
    # The <unk> costs are KenLM's; spelling charges an unknown word more, and known ones nothing.
    sentences = known + ["maybe " + known[0]]
    unk = our_logprobs(tmp_path / "tiny", sentences)
    assert unk == pytest.approx(kenlm_logprobs(path, sentences), abs=1e-4)
    encoded = [loaded.encode_text(s, add_start=True, add_end=True) for s in sentences]
    spelled = [r.score.logprob for r in loaded.score_encoded(encoded, "spell")]
    assert spelled[:-1] == pytest.approx(unk[:-1], abs=1e-6)
    assert math.isfinite(spelled[-1]) and spelled[-1] < unk[-1]


def test_the_spelling_order_is_the_most_the_spellings_support():
    assert supported_order([], 5) == 0
    assert supported_order(["ok"], 5) == 3  # "#ok#": the estimator needs one character more than the order
    assert supported_order(["up", "on"], 5) == 4  # no n-gram longer than "#up#"
    assert supported_order(["up", "on", "up"], 9) == 4  # each type counts once
    assert supported_order(["spelling", "model"], 5) == 5
    assert supported_order(["spelling", "model"], 2) == 2


def test_a_vocabulary_without_words_gets_no_spelling_model_and_says_so(tmp_path):
    path = tmp_path / "specials.arpa"
    path.write_text(TINY_BIGRAM_ARPA)
    import_arpa([str(path), "--output", str(tmp_path / "m")])
    assert (tmp_path / "m" / SPELLING_FILE).is_file()
    # Estimated again from no words at all: the old spelling model goes, config.json says none.
    info = attach_spelling(tmp_path / "m", Vocabulary(["<pad>", "<unk>", "<s>", "</s>"], dict(ARPA_SPECIALS)), None)
    assert info["order"] == 0 and info["requested_order"] == DEFAULT_ORDER
    assert not (tmp_path / "m" / SPELLING_FILE).exists()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["spelling"]["order"] == 0
    assert load_model(tmp_path / "m").spelling is None
