import pytest
import torch

from models.generation import CompletionTracker, generate
from models.quantization import to_int8
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel
from models.sampling import SamplingParams
from models.tokenizers import TokenizerConfig, make_tokenizer
from models.vocab import Vocabulary

VOCAB = Vocabulary.build([f"w{i}" for i in range(40)])
TOKENIZER = make_tokenizer(TokenizerConfig(style="plain"))


@pytest.fixture(scope="module", params=["fp32", "int8"])
def model(request) -> RNNLanguageModel:
    """The golden tests hold at every precision (int8: models.quantization)."""
    torch.manual_seed(0)
    config = LanguageModelConfig(vocab_size=len(VOCAB), embedding_dim=16, hidden_dim=32, num_layers=2, dropout=0.0)
    model = RNNLanguageModel(config).eval()
    return to_int8(model) if request.param == "int8" else model


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


def _random_word_stream(vocab, rng, length):
    """Tokens of the shipped word vocabulary, a third of them punctuation, clitics and markers
    (the tokens the detokenizer joins), never the end token."""
    special = [t for t in vocab.tokens if not t.isalnum() and t != vocab.tokens[vocab.eos_id]][:200]
    words = [t for t in vocab.tokens[:3000] if t.isalnum()]
    return [rng.choice(special) if rng.random() < 0.35 else rng.choice(words) for _ in range(length)]


def test_tracked_text_equals_detokenizing_the_whole_completion_every_time():
    """Frozen text plus live tokens give, after every token, the text and the delta that
    detokenizing the whole completion again gives."""
    import random

    from models.checkpoint import load_language_model
    from tests.conftest import SHIPPED_MODELS

    loaded = load_language_model(SHIPPED_MODELS / "wikitext2-lstm")
    vocab, tokenizer = loaded.vocab, loaded.tokenizer
    rng = random.Random(3)
    for _ in range(60):
        context = _random_word_stream(vocab, rng, rng.randint(0, 70))
        tracker = CompletionTracker(SamplingParams(max_tokens=1000), vocab, tokenizer, context=context)
        previous, tokens = "", []
        for token in _random_word_stream(vocab, rng, rng.randint(1, 150)):
            delta = tracker.add(vocab.id(token))
            tokens.append(token)
            whole = tokenizer.detokenize_continuation(context, tokens)
            common = 0
            while common < min(len(previous), len(whole)) and previous[common] == whole[common]:
                common += 1
            assert tracker.completion.text == whole
            assert delta == whole[common:]
            previous = whole


def test_streaming_text_costs_the_same_per_token_at_any_length():
    """Detokenizer work (tokens it reads) per generated token does not grow with the length."""
    import random

    from models.checkpoint import load_language_model
    from tests.conftest import SHIPPED_MODELS

    loaded = load_language_model(SHIPPED_MODELS / "wikitext2-lstm")
    work = {}
    for length in (300, 1200):
        read = []
        tokenizer = loaded.tokenizer
        original = tokenizer.detokenize
        tokenizer.detokenize = lambda tokens: read.append(len(tokens)) or original(tokens)
        try:
            tracker = CompletionTracker(SamplingParams(max_tokens=5000), loaded.vocab, tokenizer, context=["The", "game"])
            for token in _random_word_stream(loaded.vocab, random.Random(length), length):
                tracker.add(loaded.vocab.id(token))
        finally:
            del tokenizer.detokenize
        work[length] = sum(read) / length
    assert work[1200] < 1.3 * work[300], work  # rebuilding the whole text each time made this ~4x


def _track(tokens, stop, context=("w0",)):
    tracker = CompletionTracker(SamplingParams(max_tokens=50, stop=stop), VOCAB, TOKENIZER, context=list(context))
    deltas = [tracker.add(VOCAB.id(token)) for token in tokens if not tracker.finished]
    return tracker, deltas


def test_a_stop_string_drops_its_token_with_its_text():
    tracker, deltas = _track(["w1", "w2", "w3"], ("w2",))
    completion = tracker.completion
    assert completion.finish_reason == "stop"
    assert completion.text == " w1 " and completion.tokens == ["w1"]
    assert completion.token_ids == [VOCAB.id("w1"), VOCAB.id("w2")]  # what the state has read
    assert "".join(deltas) == completion.text


def test_a_stop_string_over_several_tokens_drops_them_all():
    tracker, _ = _track(["w1", "w2", "w3", "w4"], ("w2 w3",))
    assert tracker.completion.text == " w1 " and tracker.completion.tokens == ["w1"]


def test_a_token_that_runs_into_the_stop_string_is_kept_with_its_text_cut():
    """The text is cut before the stop string (OpenAI); a token that begins before it keeps its
    place, so every reported token's offset lies inside the text."""
    tracker, _ = _track(["w1", "w2", "w3"], ("1 w",))
    assert tracker.completion.text == " w" and tracker.completion.tokens == ["w1"]
    assert tracker.token_offsets[: len(tracker.completion.tokens)] == [1]


def test_the_earliest_of_several_stop_strings_ends_the_text():
    tracker, _ = _track(["w1", "w2"], ("w2", "w1"))
    assert tracker.completion.text == " " and tracker.completion.tokens == []
