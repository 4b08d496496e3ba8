"""Text in the form a speech recogniser writes it: lower case, no punctuation, numbers spelled
out as they are read ("1990s" -> "nineteen nineties", "$5" -> "five dollars", "3.5%" -> "three
point five percent"), apostrophes kept inside words ("isn't", "o'brien").

A language model trained on text in this form (`train_lm --text-normalization recogniser`)
records it in its config.json (tokenizer -> "text_normalization"), and `/v1/rescore` and
`training.tune_rescoring` put hypotheses into the same form before such a model scores them, so
that a recogniser's "mister smith paid five dollars" meets the words the model was trained on
("Mr. Smith paid $5." in the corpus). The output holds only lower-case letters, apostrophes
between letters and single spaces, and normalizing it again changes nothing.
"""
from __future__ import annotations

import re
import unicodedata

NONE = "none"
RECOGNISER = "recogniser"
NORMALIZATIONS = (NONE, RECOGNISER)

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion")
_IRREGULAR_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                       "nine": "ninth", "twelve": "twelfth"}
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}
# Spoken the same whichever way a recogniser's dictionary writes them.
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus"}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_NUMBER = re.compile(
    r"(?P<currency>[$£€] ?)?"
    r"(?P<integer>\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?:(?P<ordinal>st|nd|rd|th)(?![a-z])|(?P<plural>s|'s)(?![a-z]))?"
    r"(?P<scale> (?:thousand|million|billion|trillion))?"
    r"(?P<percent> ?%)?")
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at "}


def normalize_text(text: str, normalization: str = RECOGNISER) -> str:
    """`text` in the form `normalization` names ("none": unchanged)."""
    if normalization == NONE:
        return text
    if normalization != RECOGNISER:
        raise ValueError(f"unknown text normalization {normalization!r} (known: {', '.join(NORMALIZATIONS)})")
    return recogniser_form(text)


def recogniser_form(text: str) -> str:
    result = _one_pass(text)
    # Lower-casing after decomposition can yield a letter that composes or decomposes again;
    # a few passes settle every script seen, and anything left unsettled is dropped.
    for _ in range(3):
        again = _one_pass(result)
        if again == result:
            return result
        result = again
    return _letters_only(result)


def _one_pass(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    # Any script's decimal digits read as numbers, not dropped as symbols.
    text = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ("0" <= ch <= "9") else ch for ch in text)
    text = _NUMBER.sub(lambda match: f" {_spoken_number(match)} ", text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    # Accents dropped as a recogniser's dictionary spells words ("café" -> "cafe").
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    cleaned = "".join(ch.lower() if ch.isalpha() else "'" if ch == "'" else " " for ch in text)
    words = []
    for word in cleaned.split():
        word = re.sub(r"'{2,}", "'", word).strip("'")
        if word:
            words.append(_ABBREVIATIONS.get(word, word))
    return " ".join(words)


def _letters_only(text: str) -> str:
    return " ".join(word for word in text.split() if all((ch.isalpha() and ch == ch.lower()) or ch == "'" for ch in word))


def _spoken_number(match: re.Match) -> str:
    integer, fraction = match["integer"].replace(",", ""), match["fraction"]
    currency = (match["currency"] or "").strip()
    year_like = (len(match["integer"]) == 4 and not currency and fraction is None and not match["percent"]
                 and not match["ordinal"] and not match["scale"] and (1100 <= int(integer) <= 1999 or 2010 <= int(integer) <= 2099))
    if year_like:
        words = spell_year(int(integer))
    else:
        words = spell_integer(integer)
    if match["ordinal"] and fraction is None:
        words = _ordinal(words)
    elif match["plural"] and fraction is None:
        words = _plural(words) if match["plural"] == "s" else words + "'s"
    elif match["plural"]:
        words += " s"
    cents = None
    if fraction is not None:
        if currency and len(fraction) == 2:
            cents = spell_integer(fraction)
        else:
            words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    if match["scale"]:
        words += match["scale"]
    if currency:
        singular, plural, cent, cents_word = _CURRENCIES[currency]
        words += " " + (singular if words == "one" else plural)
        if cents is not None and int(fraction):
            words += f" {cents} {cent if cents == 'one' else cents_word}"
    if match["percent"]:
        words += " percent"
    return words


def spell_integer(digits: str) -> str:
    """A non-negative integer written in digits, as read ("1200" -> "one thousand two hundred");
    leading zeros and numbers past the named scales are read digit by digit."""
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > 3 * len(_SCALES):
        return " ".join(_ONES[int(d)] for d in digits)
    number = int(digits)
    if number == 0:
        return "zero"
    parts = []
    for scale in range(len(_SCALES) - 1, -1, -1):
        group = number // 1000**scale % 1000
        if group:
            parts.append(_below_thousand(group) + (f" {_SCALES[scale]}" if scale else ""))
    return " ".join(parts)


def spell_year(year: int) -> str:
    """A year as read: 1990 -> "nineteen ninety", 1905 -> "nineteen oh five", 1900 -> "nineteen
    hundred", 2000-2009 -> "two thousand five"."""
    if 2000 <= year <= 2009 or not 1000 <= year <= 9999:
        return spell_integer(str(year))
    high, low = divmod(year, 100)
    if low == 0:
        return f"{_below_thousand(high)} hundred"
    return f"{_below_thousand(high)} {'oh ' + _ONES[low] if low < 10 else _below_thousand(low)}"


def _below_thousand(number: int) -> str:
    hundreds, rest = divmod(number, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        words.append(_TENS[rest // 10] + (f" {_ONES[rest % 10]}" if rest % 10 else ""))
    elif rest:
        words.append(_ONES[rest])
    return " ".join(words)


def _ordinal(words: str) -> str:
    *head, last = words.split()
    if last in _IRREGULAR_ORDINALS:
        last = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _plural(words: str) -> str:
    *head, last = words.split()
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith(("x", "s")):
        last += "es"
    else:
        last += "s"
    return " ".join([*head, last])
