"""ARPA back-off n-gram files (the format KenLM, SRILM and Kaldi write), read into and written
from this project's n-gram tables (`models.ngram`).

ARPA stores log10 probabilities and back-off weights; the tables hold natural logs. Querying
follows the same back-off rule either way, so an imported file scores exactly as KenLM scores
it. Sentence boundaries: ARPA's `<s>` is the context a sentence starts from and `</s>` the
token that ends it; an imported model keeps those names as its start and end tokens.
This project's own n-grams read a stream of lines separated by one `<eos>`; written as ARPA,
`<eos>` becomes `</s>`, and every n-gram that starts from `<eos>` is written a second time
starting from `<s>`, so a sentence scored by KenLM (from `<s>` through `</s>`) gets the
probabilities it gets here.
"""
from __future__ import annotations

import gzip
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.ngram import NGramModel, NGramTable, hash_ngrams
from models.vocab import EOS

LN10 = math.log(10.0)
ARPA_BOS, ARPA_EOS, ARPA_UNK = "<s>", "</s>", "<unk>"
# What KenLM gives <unk> when a file has none (log10), and the placeholder for tokens that are
# never predicted.
MISSING_UNK_LOG10 = -100.0
NEVER_LOG10 = -99.0
_SECTION = re.compile(r"^\\(\d+)-grams:\s*$")
_COUNT = re.compile(r"^ngram\s+(\d+)\s*=\s*(\d+)\s*$")


class ArpaError(ValueError):
    """The file is not a well-formed ARPA file; the message names the line."""


@dataclass
class ArpaModel:
    """An ARPA file's contents: its words in id order and, per order, the n-grams as id rows
    with natural-log probabilities and back-off weights."""

    words: list[str]
    ngrams: list[np.ndarray]  # per order k: (n, k) int64 ids
    logprob: list[np.ndarray]  # per order: float32, natural log
    backoff: list[np.ndarray]  # per order: float32, natural log (zeros when absent)

    @property
    def order(self) -> int:
        return len(self.ngrams)

    def to_ngram_model(self) -> NGramModel:
        tables = []
        for ids, logprob, backoff in zip(self.ngrams, self.logprob, self.backoff):
            keys = hash_ngrams([ids[:, j] for j in range(ids.shape[1])])
            order = np.argsort(keys)
            if len(keys) > 1 and not (keys[order][1:] > keys[order][:-1]).all():
                raise ArpaError("the file lists an n-gram twice")
            tables.append(NGramTable(keys[order], logprob[order].astype(np.float32), backoff[order].astype(np.float32)))
        return NGramModel(tables, len(self.words))


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_arpa(path: str | Path, progress=None) -> ArpaModel:
    """Parse an ARPA file (plain or .gz). `<unk>` is added when missing, as KenLM does."""
    path = Path(path)
    counts: dict[int, int] = {}
    words: list[str] = []
    word_ids: dict[str, int] = {}
    ngrams: list[np.ndarray] = []
    logprobs: list[np.ndarray] = []
    backoffs: list[np.ndarray] = []
    with _open_text(path) as handle:
        line_number = 0
        for line in handle:
            line_number += 1
            if line.strip() == "\\data\\":
                break
        else:
            raise ArpaError(f"{path}: no \\data\\ section")
        for line in handle:
            line_number += 1
            text = line.strip()
            if not text:
                if counts:
                    break
                continue
            match = _COUNT.match(text)
            if not match:
                raise ArpaError(f"{path}:{line_number}: expected 'ngram N=COUNT', found {text[:60]!r}")
            counts[int(match.group(1))] = int(match.group(2))
        if not counts or sorted(counts) != list(range(1, max(counts) + 1)):
            raise ArpaError(f"{path}: the \\data\\ section must count every order from 1")
        for order in range(1, max(counts) + 1):
            for line in handle:
                line_number += 1
                text = line.strip()
                if text:
                    break
            else:
                raise ArpaError(f"{path}: the file ends before the {order}-grams")
            if not _SECTION.match(text) or int(_SECTION.match(text).group(1)) != order:
                raise ArpaError(f"{path}:{line_number}: expected '\\{order}-grams:', found {text[:60]!r}")
            expected = counts[order]
            ids = np.empty((expected, order), dtype=np.int64)
            logprob = np.empty(expected, dtype=np.float64)
            backoff = np.zeros(expected, dtype=np.float64)
            row = 0
            for line in handle:
                line_number += 1
                fields = line.split()
                if not fields:
                    break
                if row >= expected:
                    raise ArpaError(f"{path}:{line_number}: more {order}-grams than the header's {expected}")
                if len(fields) not in (order + 1, order + 2):
                    raise ArpaError(f"{path}:{line_number}: a {order}-gram line has a log-probability, {order} words and perhaps a back-off")
                try:
                    logprob[row] = float(fields[0])
                    if len(fields) == order + 2:
                        backoff[row] = float(fields[-1])
                except ValueError as error:
                    raise ArpaError(f"{path}:{line_number}: {error}") from error
                tokens = fields[1 : order + 1]
                if order == 1:
                    if tokens[0] in word_ids:
                        raise ArpaError(f"{path}:{line_number}: the unigram {tokens[0]!r} appears twice")
                    word_ids[tokens[0]] = len(words)
                    words.append(tokens[0])
                    ids[row, 0] = word_ids[tokens[0]]
                else:
                    try:
                        ids[row] = [word_ids[t] for t in tokens]
                    except KeyError as error:
                        raise ArpaError(f"{path}:{line_number}: {error.args[0]!r} is not a unigram") from error
                row += 1
                if progress is not None and row % 100_000 == 0:
                    progress(order, row, expected)
            if row != expected:
                raise ArpaError(f"{path}: {row} {order}-grams, the header says {expected}")
            ngrams.append(ids)
            logprobs.append(logprob)
            backoffs.append(backoff)
    if ARPA_UNK not in word_ids:
        word_ids[ARPA_UNK] = len(words)
        words.append(ARPA_UNK)
        ngrams[0] = np.vstack([ngrams[0], [[word_ids[ARPA_UNK]]]])
        logprobs[0] = np.append(logprobs[0], MISSING_UNK_LOG10)
        backoffs[0] = np.append(backoffs[0], 0.0)
    if ARPA_BOS not in word_ids or ARPA_EOS not in word_ids:
        raise ArpaError(f"{path}: an ARPA file needs the unigrams {ARPA_BOS} and {ARPA_EOS}")
    to_natural = lambda values: (values * LN10).astype(np.float32)  # noqa: E731
    return ArpaModel(words, ngrams, [to_natural(v) for v in logprobs], [to_natural(v) for v in backoffs])


def write_arpa(path: str | Path, words: list[str], ngrams: list[np.ndarray], logprob: list[np.ndarray],
               backoff: list[np.ndarray], boundary: str = EOS) -> None:
    """Write n-grams (id rows, natural logs) as ARPA. The stream `boundary` token becomes
    `</s>`, and n-grams starting from it are written again starting from `<s>` (see above)."""
    order = len(ngrams)
    names = [ARPA_EOS if w == boundary else w for w in words]
    if ARPA_BOS in names:
        raise ValueError(f"the vocabulary already has {ARPA_BOS}")
    boundary_id = words.index(boundary)
    sections: list[list[str]] = []
    for k in range(order):
        ids, lp, bo = ngrams[k], logprob[k] / LN10, backoff[k] / LN10
        lines: list[str] = []

        def emit(row_names: list[str], p: float, b: float) -> None:
            text = f"{p:.7f}\t{' '.join(row_names)}"
            lines.append(text + (f"\t{b:.7f}" if k < order - 1 else ""))

        for row in range(len(ids)):
            row_names = [names[i] for i in ids[row]]
            emit(row_names, float(lp[row]), float(bo[row]))
            if ids[row, 0] == boundary_id:
                # The sentence start: as a unigram never predicted, as a context the boundary's.
                start = [ARPA_BOS] + row_names[1:]
                emit(start, NEVER_LOG10 if k == 0 else float(lp[row]), float(bo[row]))
        sections.append(lines)
    with (gzip.open(path, "wt", encoding="utf-8") if str(path).endswith(".gz") else open(path, "w", encoding="utf-8")) as out:
        out.write("\\data\\\n")
        for k, lines in enumerate(sections, start=1):
            out.write(f"ngram {k}={len(lines)}\n")
        for k, lines in enumerate(sections, start=1):
            out.write(f"\n\\{k}-grams:\n")
            out.write("\n".join(lines))
            out.write("\n")
        out.write("\n\\end\\\n")
