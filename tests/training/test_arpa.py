"""ARPA n-gram files in and out, checked against KenLM itself (the `kenlm` module reading the
same file): the same sentence log-probabilities (log10 there, natural log here)."""
import math

import pytest

from models.registry import load_model
from training.arpa import ArpaError, read_arpa
from training.import_arpa import main as import_arpa
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
