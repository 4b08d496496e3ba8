"""Tokenized corpora (WikiText-2, PTB) rewritten in a text normalisation's form, one sentence a
line, as `train_lm --text-normalization` trains on them.

Each line is detokenized with the corpus's own conventions (WikiText-2's ``@-@`` joiners, PTB's
split clitics), split into sentences, put in the normalisation's form
(`models.text_normalization`) and tokenized again by the model's tokenizer, so that training sees
the tokens the service makes of a normalised request. The corpora's unknown-word markers stay
unknown words: ``<unk>``, and PTB's ``N`` (a number whose digits the corpus dropped, so whose
spoken words are unknown). WikiText-2's section headings (``= Title =``) are not sentences and
are left out. Several corpora are written one after another into the same split files.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from models.text_normalization import normalize_text
from models.tokenizers import Tokenizer, TokenizerConfig, make_tokenizer, split_sentences
from models.vocab import UNK
from training.corpus import SPLITS, CorpusFiles

PTB_NUMBER = "N"
CLITIC = re.compile(r"'[a-z]+")


def unknown_marker(token: str, style: str) -> bool:
    return token == UNK or (style == "ptb" and token == PTB_NUMBER)


@lru_cache(maxsize=None)
def corpus_reader(style: str) -> Tokenizer:
    """The tokenizer that undoes a corpus style's conventions."""
    return make_tokenizer(TokenizerConfig(level="word", style=style))


def marked_words(text: str) -> list[str]:
    """White-space words with a detokenizer's "<unk>'s" split back into "<unk>" and "'s"."""
    return [part for word in text.split() for part in re.split(f"({re.escape(UNK)})", word) if part]


def normalized_sentences(line: str, style: str, normalization: str, tokenizer: Tokenizer) -> list[list[str]]:
    """The sentences of one tokenized corpus line as the model's tokens, in `normalization`'s
    form (unknown-word markers kept as <unk>)."""
    tokens = line.split()
    if not tokens or (style == "wikitext" and tokens[0] == "=" and tokens[-1] == "="):
        return []
    reader = corpus_reader(style)
    # PTB writes one sentence a line; a WikiText-2 line is a paragraph.
    texts = [reader.detokenize(tokens)] if style == "ptb" else split_sentences(reader.detokenize(tokens))
    sentences = []
    for text in texts:
        words: list[str] = []
        # Unknown-word markers split the sentence so the normalisation never spells them.
        segment: list[str] = []
        for word in [*marked_words(text), None]:
            if word is not None and not unknown_marker(word, style):
                if not segment and words and words[-1] == UNK and CLITIC.fullmatch(word.lower()):
                    words.append(word.lower())  # "<unk>'s": the clitic of an unknown word
                else:
                    segment.append(word)
                continue
            if segment:
                words.extend(tokenizer.tokenize(normalize_text(" ".join(segment), normalization)))
                segment = []
            if word is not None:
                words.append(UNK)
        if words:
            sentences.append(words)
    return sentences


def write_normalized_corpus(sources: list[tuple[CorpusFiles, str]], normalization: str, model_tokenizer: Tokenizer,
                            directory: Path) -> CorpusFiles:
    """Each source's splits (a corpus and the style it is written in) normalised into
    `directory`/{train,valid,test}.txt; written once and reused while the sources are unchanged
    (a resumed run reads the same text)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "sources.sha256"
    fingerprint = hashlib.sha256(repr([(files.provenance(), style, normalization, model_tokenizer.config.to_json())
                                        for files, style in sources]).encode()).hexdigest()
    outputs = {split: directory / f"{split}.txt" for split in SPLITS}
    if stamp.exists() and stamp.read_text().strip() == fingerprint and all(p.exists() for p in outputs.values()):
        return CorpusFiles.find(directory)
    for split, output in outputs.items():
        partial = output.with_suffix(".partial")
        with open(partial, "w", encoding="utf-8") as handle:
            for files, style in sources:
                path = getattr(files, split)
                if path is None:
                    raise ValueError(f"{files.train.parent}: no {split} file (a normalised corpus needs train, valid and test)")
                for line in path.read_text(encoding="utf-8").splitlines():
                    for sentence in normalized_sentences(line, style, normalization, model_tokenizer):
                        handle.write(" ".join(sentence) + "\n")
        partial.replace(output)
    stamp.write_text(fingerprint + "\n")
    return CorpusFiles.find(directory)
