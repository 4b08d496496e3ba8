import pytest

from models.tokenizers import TokenizerConfig, make_tokenizer
from models.tokenizers import words as tokenizer_module

WIKITEXT = make_tokenizer(TokenizerConfig(level="word", style="wikitext"))


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("The game's engine.", ["The", "game", "'s", "engine", "."]),
        ("It cost 1,000 dollars.", ["It", "cost", "1", "@,@", "000", "dollars", "."]),
        ("A state-of-the-art car", ["A", "state", "@-@", "of", "@-@", "the", "@-@", "art", "car"]),
        ("Pi is 3.14", ["Pi", "is", "3", "@.@", "14"]),
        ("I don't know", ["I", "don", "'t", "know"]),
        ('He said "hi" (twice).', ["He", "said", '"', "hi", '"', "(", "twice", ")", "."]),
    ],
)
def test_wikitext_conventions(text, tokens):
    assert WIKITEXT.tokenize(text) == tokens


@pytest.mark.parametrize(
    "text",
    [
        "The game's state-of-the-art engine cost 1,000 dollars, or 3.5 million.",
        "I don't know; can't say \"hello\" (really).",
        "Café naïve 東京 — ok!",
        "First line.\nSecond line?",
    ],
)
def test_word_round_trip(text):
    assert WIKITEXT.detokenize(WIKITEXT.tokenize(text)).replace("\n", " ") == text.replace("\n", " ")


def test_detokenize_eos_starts_new_line():
    assert WIKITEXT.detokenize(["Hello", ".", "<eos>", "Bye", "."]) == "Hello.\nBye."


@pytest.mark.parametrize("text", ["ROMEO:\nO, she doth teach!", "naïve café 東京 \t tabs", ""])
def test_char_round_trip(text):
    chars = make_tokenizer(TokenizerConfig(level="char"))
    assert chars.tokenize(text) == list(text)
    assert chars.detokenize(chars.tokenize(text)) == text


def test_ptb_style_lowercases_numbers_and_drops_punctuation():
    ptb = make_tokenizer(TokenizerConfig(style="ptb"))
    assert ptb.tokenize("The company sold 1,000 cars. It's big!") == [
        "the", "company", "sold", "N", "cars", "<eos>", "it", "'s", "big",
    ]


def test_works_without_punkt(monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_punkt_available", lambda: False)
    assert tokenizer_module.split_sentences("One here. Two there! Three?") == ["One here.", "Two there!", "Three?"]
    assert WIKITEXT.tokenize("It's 1,000. Fine.") == ["It", "'s", "1", "@,@", "000", ".", "Fine", "."]


@pytest.mark.parametrize(
    "tokens, text",
    [
        (["£", "1", "million"], "£ 1 million"),  # WikiText keeps the pound sign apart
        (["won", "1", "–", "0"], "won 1 – 0"),  # an en dash between numbers: a score, a range
        (["$", "5"], "$5"),  # Treebank glues the dollar sign to what follows
        (["1", "@-@", "0"], "1-0"),
        (["1", "@,@", "000"], "1,000"),
        (["£", "1", "@.@", "4", "billion"], "£ 1.4 billion"),
    ],
)
def test_wikitext_detokenizes_currency_dashes_and_joiners(tokens, text):
    assert WIKITEXT.detokenize(tokens) == text
    # Streamed text joins the same way wherever the prompt ends.
    for cut in range(len(tokens) + 1):
        assert WIKITEXT.detokenize(tokens[:cut]) + WIKITEXT.detokenize_continuation(tokens[:cut], tokens[cut:]) == text


@pytest.mark.parametrize("text", ["It cost £ 1 million.", "They won 1 – 0 at home.", "It cost $5."])
def test_currency_and_score_round_trip(text):
    assert WIKITEXT.detokenize(WIKITEXT.tokenize(text)) == text


def test_a_line_that_ends_on_a_joiner_keeps_no_space_before_it():
    """A prompt may end inside a hyphenated word or a number ("state-of-"): the joiner glues to
    the word before it, and the continuation follows with no space."""
    assert WIKITEXT.tokenize("state-of-") == ["state", "@-@", "of", "@-@"]
    assert WIKITEXT.detokenize(["state", "@-@", "of", "@-@"]) == "state-of-"
    assert WIKITEXT.detokenize_continuation(["1", "@,@"], ["000"]) == "000"
    assert WIKITEXT.detokenize_continuation(["state", "@-@", "of", "@-@"], ["the", "@-@", "art"]) == "the-art"
