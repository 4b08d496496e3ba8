"""evaluate_lm's per-token mixtures: the mixture's perplexity, the weights' edges, tuning on a
file, and models that cannot be mixed."""
import pytest

from training import evaluate_lm
from training.cli import UsageError
from training.train_ngram import main as train_ngram


@pytest.fixture(scope="module")
def same_corpus_ngram(tmp_path_factory, tiny_corpus):
    output = tmp_path_factory.mktemp("kn") / "tiny-kn3-wikitext"
    train_ngram(["--data", str(tiny_corpus), "--order", "3", "--output", str(output)])
    return output


def test_a_mixture_between_its_parts(tiny_model_path, tiny_corpus, same_corpus_ngram):
    test = str(tiny_corpus / "test.txt")
    rnn = evaluate_lm.main([str(tiny_model_path), "--data", test])
    ngram = evaluate_lm.main([str(same_corpus_ngram), "--data", test])
    half = evaluate_lm.main([str(tiny_model_path), "--data", test, "--interpolate", f"{same_corpus_ngram}:0.5"])["interpolation"]
    assert half["weights"] == {"tiny-word-lstm": 0.5, "tiny-kn3-wikitext": 0.5}
    # A mixture's log-likelihood is at least the weighted mean of its parts' (Jensen).
    assert half["loss_nats_per_token"] <= 0.5 * rnn["loss_nats_per_token"] + 0.5 * ngram["loss_nats_per_token"] + 1e-6
    nothing = evaluate_lm.main([str(tiny_model_path), "--data", test, "--interpolate", f"{same_corpus_ngram}:0"])["interpolation"]
    assert nothing["perplexity"] == pytest.approx(rnn["perplexity"], rel=1e-4)
    tuned = evaluate_lm.main([str(tiny_model_path), "--data", test, "--interpolate", str(same_corpus_ngram),
                              "--tune-on", str(tiny_corpus / "valid.txt")])["interpolation"]
    assert tuned["tuned_on"].endswith("valid.txt") and sum(tuned["weights"].values()) == pytest.approx(1.0)
    assert tuned["perplexity"] <= min(rnn["perplexity"], ngram["perplexity"]) * 1.01


def test_models_that_split_text_differently_are_refused(tiny_model_path, tiny_corpus, tiny_ngram_path):
    with pytest.raises(UsageError, match="cannot be mixed per token"):
        evaluate_lm.main([str(tiny_model_path), "--data", str(tiny_corpus / "test.txt"), "--interpolate", f"{tiny_ngram_path}:0.5"])
    with pytest.raises(UsageError, match="MODEL:WEIGHT"):
        evaluate_lm.main([str(tiny_model_path), "--data", str(tiny_corpus / "test.txt"), "--interpolate", str(tiny_ngram_path)])
