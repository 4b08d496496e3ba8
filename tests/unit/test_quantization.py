"""Int8 inference (models.quantization): every row's result is the same bits alone or in any
batch, sequences, steps and prefix trees agree exactly, and the numbers stay close to fp32."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.cells import make_cell
from models.prefix_scoring import score_prefix_tree
from models.quantization import (
    FP32,
    INT8,
    Int8Linear,
    Int8RecurrentLayers,
    int8_available,
    precision_revision,
    resolve_precision,
    to_int8,
)
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.scoring import score_sequences
from tests.conftest import examples

pytestmark = pytest.mark.skipif(not int8_available(), reason="this PyTorch build has no fbgemm int8 kernels")


def language_model(cell: str = "lstm", head: str = "linear", tie: bool = False, hidden: int = 24, seed: int = 0) -> RNNLanguageModel:
    torch.manual_seed(seed)
    config = LanguageModelConfig(vocab_size=50, embedding_dim=12, hidden_dim=hidden, num_layers=2, cell=cell, dropout=0.0,
                                 tie_weights=tie, head=head, adaptive_cutoffs=(10, 30) if head == "adaptive" else ())
    return RNNLanguageModel(config).eval()


@settings(max_examples=examples(25), deadline=None)
@given(rows=st.integers(1, 9), inputs=st.integers(1, 70), outputs=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_a_row_gives_the_same_bits_alone_or_in_any_batch(rows, inputs, outputs, seed):
    generator = torch.Generator().manual_seed(seed)
    linear = Int8Linear(torch.randn(outputs, inputs, generator=generator), torch.randn(outputs, generator=generator))
    x = torch.randn(rows, inputs, generator=generator) * torch.rand(rows, 1, generator=generator) * 10
    together = linear(x)
    for row in range(rows):
        assert torch.equal(linear(x[row : row + 1])[0], together[row])
    assert torch.equal(linear(x.flip(0)), together.flip(0))  # whatever the order


def test_int8_products_are_close_to_fp32_and_edge_rows_behave():
    torch.manual_seed(0)
    fp32 = torch.nn.Linear(64, 32)
    linear = Int8Linear.of(fp32)
    x = torch.randn(16, 64)
    error = (linear(x) - fp32(x)).abs()
    assert error.max() < 0.05 * fp32(x).abs().max()
    assert torch.equal(linear(torch.zeros(2, 64)), fp32.bias.detach().expand(2, -1))  # a zero row: the bias exactly
    assert linear(torch.zeros(0, 64)).shape == (0, 32)
    assert linear(torch.randn(3, 5, 64)).shape == (3, 5, 32)
    huge = linear(torch.full((1, 64), 1e30))
    assert torch.isfinite(huge).all() and huge.abs().max() > 1e28  # scaled back, not clipped


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_sequence_at_once_equals_it_token_by_token_and_alone(cell):
    model = to_int8(language_model(cell, hidden=20))
    tokens = torch.randint(0, 50, (4, 7))
    lengths = torch.tensor([7, 3, 5, 1])
    with torch.inference_mode():
        hidden, state = model.hidden(tokens, lengths=lengths)
        for row, length in enumerate(lengths.tolist()):
            row_state = model.init_state(1)
            for t in range(length):
                stepped, row_state = model.step_hidden(tokens[row : row + 1, t], row_state)
                assert torch.equal(stepped[0], hidden[row, t])
            for together, alone in zip(state, row_state, strict=True):
                assert torch.equal(together[:, row], alone[:, 0])
            assert not hidden[row, length:].any()  # past its length a row outputs zeros


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_prefix_tree_scores_exactly_as_flat_scoring(cell):
    model = to_int8(language_model(cell, head="adaptive"))
    torch.manual_seed(1)
    stem = torch.randint(0, 50, (6,)).tolist()
    sequences = [stem + torch.randint(0, 50, (n,)).tolist() for n in (2, 4, 4, 7, 1)]
    tree, flat = score_prefix_tree(model, sequences), score_sequences(model, sequences)
    for a, b in zip(tree, flat):
        assert a.token_logprobs == b.token_logprobs


@pytest.mark.parametrize("cell, head, tie", [("lstm", "linear", True), ("gru", "adaptive", False), ("lstm", "adaptive", False)])
def test_int8_log_probabilities_stay_close_to_fp32(cell, head, tie):
    fp32 = language_model(cell, head, tie, hidden=32)
    int8 = to_int8(language_model(cell, head, tie, hidden=32))
    tokens = torch.randint(0, 50, (3, 12))
    with torch.inference_mode():
        a = fp32(tokens)[0].log_softmax(-1)
        b = int8(tokens)[0].log_softmax(-1)
    assert (a - b).abs().max() < 0.05


def test_what_is_quantized_and_what_stays_fp32():
    model = to_int8(language_model("lstm", "adaptive"))
    assert isinstance(model.rnn, Int8RecurrentLayers)
    assert isinstance(model.adaptive.head, Int8Linear)
    assert all(isinstance(layer, Int8Linear) for cluster in model.adaptive.tail for layer in cluster)
    assert isinstance(model.embedding, torch.nn.Embedding)  # embeddings stay as they are
    peephole = to_int8(language_model("peephole"))  # no int8 form of the cell: it stays fp32
    assert peephole.rnn.name == "peephole" and not isinstance(peephole.rnn, Int8RecurrentLayers)
    assert isinstance(peephole.decoder, Int8Linear)
    with pytest.raises(ValueError):
        Int8RecurrentLayers(make_cell("jordan", 4, 4))


def test_a_captioner_decoder_samples_the_same_alone_or_batched_in_int8():
    from models.captioning.decoder import CaptionDecoder, CaptionDecoderConfig
    from models.captioning.decoding import sample_captions
    from models.sampling import SamplingParams

    torch.manual_seed(1)
    decoder = to_int8(CaptionDecoder(CaptionDecoderConfig(vocab_size=9, feature_dim=6, embedding_dim=8, hidden_dim=12,
                                                          attention_dim=4, dropout=0.0)).eval())
    assert isinstance(decoder.cell, Int8RecurrentLayers) and isinstance(decoder.output, Int8Linear)
    features = torch.randn(4, 5, 6)
    params = [SamplingParams(strategy="multinomial", seed=row, max_tokens=8) for row in range(4)]
    together = sample_captions(decoder, features, params, 2, 3, 0)
    for row in range(4):
        (alone,) = sample_captions(decoder, features[row : row + 1], params[row : row + 1], 2, 3, 0)
        assert alone.token_ids == together[row].token_ids and alone.logprob == together[row].logprob


def test_precision_is_resolved_from_the_setting_the_model_and_the_device():
    assert resolve_precision("auto", None, True, True) == (FP32, None)
    assert resolve_precision("auto", INT8, True, True) == (INT8, None)
    assert resolve_precision(FP32, INT8, True, True) == (FP32, None)  # the setting wins over config.json
    assert resolve_precision(INT8, None, True, True) == (INT8, None)
    assert resolve_precision(INT8, None, False, True)[0] == FP32  # an n-gram model has no int8 form
    assert resolve_precision(INT8, None, True, False)[0] == FP32  # a GPU serves fp32
    assert resolve_precision("auto", "int4", True, True)[0] == FP32
    assert precision_revision("abc", FP32) == "abc"
    assert precision_revision("abc", INT8) != "abc" and len(precision_revision("abc", INT8)) == 64


def test_to_int8_refuses_what_it_cannot_quantize():
    with pytest.raises(ValueError):
        to_int8(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_adaptive_head_samples_the_same_alone_or_batched_in_int8(cell):
    """Sampling reads an adaptive head cluster by cluster (models.next_token): in int8 too, a
    seeded row draws the same tokens alone or among others."""
    from models.generation import generate
    from models.sampling import SamplingParams
    from models.tokenizers import TokenizerConfig, make_tokenizer
    from models.vocab import Vocabulary

    vocab = Vocabulary.build([f"w{i}" for i in range(46)])
    model = to_int8(language_model(cell, "adaptive", seed=3))
    tokenizer = make_tokenizer(TokenizerConfig(style="plain"))
    prompts = [[3, 5, 6], [3], [3, 9, 12, 14, 20], [3, 7]]
    params = [SamplingParams(strategy="multinomial", seed=row, max_tokens=10, allow_unknown=True) for row in range(len(prompts))]
    together = generate(model, vocab, tokenizer, prompts, params)
    for prompt, p, batched in zip(prompts, params, together):
        assert generate(model, vocab, tokenizer, [prompt], [p])[0].token_ids == batched.token_ids


def test_a_captioner_beam_search_is_the_same_alone_or_batched_in_int8():
    from models.captioning.decoder import CaptionDecoder, CaptionDecoderConfig
    from models.captioning.decoding import beam_search

    torch.manual_seed(2)
    decoder = to_int8(CaptionDecoder(CaptionDecoderConfig(vocab_size=12, feature_dim=6, embedding_dim=8, hidden_dim=16,
                                                          attention_dim=4, dropout=0.0)).eval())
    features = torch.randn(3, 5, 6)
    together = beam_search(decoder, features, 2, 3, beam_size=3, max_tokens=8, n_best=2)
    for row in range(3):
        alone = beam_search(decoder, features[row : row + 1], 2, 3, beam_size=3, max_tokens=8, n_best=2)[0]
        assert [(c.token_ids, c.logprob) for c in alone] == [(c.token_ids, c.logprob) for c in together[row]]
