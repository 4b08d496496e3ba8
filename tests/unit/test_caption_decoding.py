"""Beam search never repeats a word n-gram inside a caption when asked not to."""
import pytest
import torch

from models.captioning.decoder import CaptionDecoder, CaptionDecoderConfig
from models.captioning.decoding import beam_search, has_repeated_ngram, repeated_ngram_continuations

BOS, EOS = 2, 3


def test_repeated_ngram_continuations():
    sequence = [5, 6, 7, 5, 6]
    assert repeated_ngram_continuations(sequence, 3) == {7}  # "5 6" was followed by 7 before
    assert repeated_ngram_continuations(sequence, 2) == {7}  # "6" was followed by 7 before
    assert repeated_ngram_continuations(sequence, 1) == {5, 6, 7}
    assert repeated_ngram_continuations(sequence, 0) == set()
    assert has_repeated_ngram([1, 2, 3, 1, 2, 3]) and not has_repeated_ngram([1, 2, 3, 1, 2, 4])


def looping_decoder() -> CaptionDecoder:
    """An untrained decoder over a tiny vocabulary that never wants to stop: it repeats itself."""
    torch.manual_seed(0)
    decoder = CaptionDecoder(CaptionDecoderConfig(vocab_size=8, feature_dim=6, embedding_dim=8, hidden_dim=12, attention_dim=4, dropout=0.0))
    with torch.no_grad():
        decoder.output.bias[EOS] = -30.0
    return decoder.eval()


def test_beam_search_blocks_repeated_trigrams():
    decoder, features = looping_decoder(), torch.randn(6, 4, 6)
    free = beam_search(decoder, features, BOS, EOS, beam_size=3, max_tokens=16, n_best=3, no_repeat_ngram_size=0)
    assert any(has_repeated_ngram(c.token_ids) for captions in free for c in captions)
    blocked = beam_search(decoder, features, BOS, EOS, beam_size=3, max_tokens=16, n_best=3, no_repeat_ngram_size=3)
    assert all(not has_repeated_ngram(c.token_ids) for captions in blocked for c in captions)
    assert all(captions for captions in blocked)  # never an empty answer
    for captions in blocked:
        order = [(not c.finished, -c.ranking_score()) for c in captions]
        assert order == sorted(order)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_sampled_captions_are_the_same_alone_or_batched_whatever_their_lengths(precision):
    """Rows of different max_tokens (0 included) and strategies: each row's caption and log-probability
    equal what it gets alone, although rows leave the batch at different steps, at every precision."""
    from models.captioning.decoding import sample_captions
    from models.quantization import to_int8
    from models.sampling import SamplingParams

    torch.manual_seed(1)
    decoder = CaptionDecoder(CaptionDecoderConfig(vocab_size=8, feature_dim=6, embedding_dim=8, hidden_dim=12, attention_dim=4, dropout=0.0)).eval()
    if precision == "int8":
        decoder = to_int8(decoder)
    features = torch.randn(5, 4, 6)
    params = [SamplingParams(strategy="multinomial", seed=3, max_tokens=9), SamplingParams(strategy="argmax", max_tokens=0),
              SamplingParams(strategy="argmax", max_tokens=2), SamplingParams(strategy="top_k", top_k=3, seed=5, max_tokens=12),
              SamplingParams(strategy="multinomial", seed=8, max_tokens=1)]
    batched = sample_captions(decoder, features, params, BOS, EOS, 0)
    for row, row_params in enumerate(params):
        (alone,) = sample_captions(decoder, features[row : row + 1], [row_params], BOS, EOS, 0)
        assert batched[row].token_ids == alone.token_ids and batched[row].finished == alone.finished
        assert batched[row].logprob == alone.logprob
        assert len(alone.token_ids) <= row_params.max_tokens
