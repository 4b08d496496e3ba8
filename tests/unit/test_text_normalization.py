"""Text in a speech recogniser's form (models.text_normalization): what rescoring gives a model
trained on normalised text, and what the n-best builder writes references in."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.text_normalization import NONE, RECOGNISER, normalize_text, recogniser_form, spell_integer, spell_year

RECOGNISER_ALPHABET = re.compile(r"^(?:[^\W\d_]+(?:'[^\W\d_]+)*(?: [^\W\d_]+(?:'[^\W\d_]+)*)*)?$")


@pytest.mark.parametrize("written, spoken", [
    ("Mr. Smith paid $5.", "mister smith paid five dollars"),
    ("It cost $3.50, didn't it?", "it cost three dollars fifty cents didn't it"),
    ("In the 1990s, 3.5% of 1,200 firms", "in the nineteen nineties three point five percent of one thousand two hundred firms"),
    ("She came 2nd in 1905 and 21st in 2004.", "she came second in nineteen oh five and twenty first in two thousand four"),
    ("Rock & roll — café “O’Brien’s”", "rock and roll cafe o'brien's"),
    ("THE END", "the end"),
    ("", ""),
    ("... !!! ---", ""),
])
def test_written_text_reads_as_spoken(written, spoken):
    assert recogniser_form(written) == spoken


def test_numbers_and_years_are_spelled_as_read():
    assert spell_integer("0") == "zero" and spell_integer("007") == "zero zero seven"
    assert spell_integer("1000001") == "one million one"
    assert spell_year(1900) == "nineteen hundred" and spell_year(2009) == "two thousand nine"


def test_the_named_normalisations():
    assert normalize_text("Mr. Smith", NONE) == "Mr. Smith"
    assert normalize_text("Mr. Smith", RECOGNISER) == "mister smith"
    with pytest.raises(ValueError, match="unknown text normalization"):
        normalize_text("x", "upper")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_normalises_once_and_for_all(text):
    once = recogniser_form(text)
    assert recogniser_form(once) == once
    # Lower-case letters in words, apostrophes only inside a word, single spaces between words.
    assert RECOGNISER_ALPHABET.match(once), once
    assert once == once.lower()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789$%.,' abcXYZ", max_size=40))
def test_numbers_and_symbols_normalise_once_and_for_all(text):
    once = recogniser_form(text)
    assert recogniser_form(once) == once and not re.search(r"[\d$%.,]", once)
