import pytest
import torch

from models.generation import generate
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.sampling import SamplingParams
from models.tokenizer import Tokenizer, TokenizerConfig
from models.vocab import Vocabulary

VOCAB = Vocabulary.build([f"w{i}" for i in range(40)])
TOKENIZER = Tokenizer(TokenizerConfig(style="plain"))


@pytest.fixture(scope="module")
def model() -> RNNLanguageModel:
    torch.manual_seed(0)
    config = LanguageModelConfig(vocab_size=len(VOCAB), embedding_dim=16, hidden_dim=32, num_layers=2, dropout=0.0)
    return RNNLanguageModel(config).eval()


PROMPTS = [[3, 5, 6, 7], [3, 9], [3, 10, 11, 12, 13, 14], [3]]


@pytest.mark.parametrize(
    "params",
    [
        [SamplingParams(strategy="argmax", max_tokens=12, allow_unknown=True) for _ in PROMPTS],
        [SamplingParams(strategy="multinomial", seed=s, max_tokens=12) for s in range(len(PROMPTS))],
        [SamplingParams(strategy="top_k", top_k=5, seed=9, max_tokens=3 + s, temperature=0.7) for s in range(len(PROMPTS))],
    ],
    ids=["argmax", "multinomial", "top_k"],
)
def test_batched_generation_equals_one_at_a_time(model, params):
    batched = generate(model, VOCAB, TOKENIZER, PROMPTS, params)
    for prompt, p, together in zip(PROMPTS, params, batched):
        alone = generate(model, VOCAB, TOKENIZER, [prompt], [p])[0]
        assert alone.token_ids == together.token_ids
        assert alone.finish_reason == together.finish_reason


def test_max_tokens_and_zero(model):
    out = generate(model, VOCAB, TOKENIZER, [[3, 4], [3, 4]], [SamplingParams(strategy="argmax", max_tokens=0), SamplingParams(strategy="argmax", max_tokens=5)])
    assert out[0].token_ids == [] and out[0].finish_reason == "length"
    assert len(out[1].token_ids) <= 5


def test_stop_string_truncates_text(model):
    first = generate(model, VOCAB, TOKENIZER, [[3, 4]], [SamplingParams(strategy="argmax", max_tokens=8)])[0]
    stop_token = first.tokens[2]
    stopped = generate(model, VOCAB, TOKENIZER, [[3, 4]], [SamplingParams(strategy="argmax", max_tokens=8, stop=(stop_token,))])[0]
    assert stopped.finish_reason == "stop"
    assert stop_token not in stopped.text
    assert first.text.startswith(stopped.text)
