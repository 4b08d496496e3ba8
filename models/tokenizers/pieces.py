"""SentencePiece: an open vocabulary of subword pieces (Kudo & Richardson 2018), the
convention of open-vocabulary models. A word the training text never had is spelled with
pieces, down to UTF-8 bytes (byte fallback), so no request text is unknown.

The piece model (a protobuf, not a pickle) ships in the model directory; its ids are the
vocabulary's ids, special tokens first.
"""
from __future__ import annotations

import re
from pathlib import Path

import sentencepiece

from models.tokenizers.base import Tokenizer, TokenizerConfig, split_lines
from models.vocab import BOS, EOS, PAD, UNK, Vocabulary

PIECE_MODEL_FILE = "tokenizer.model"
WORD_START = "\u2581"  # "▁": a piece that begins a word (SentencePiece's space marker)
_BYTE_PIECE = re.compile(r"^<0x([0-9A-F]{2})>$")
# Corpora that replaced rare words by <unk> (WikiText-2, PTB) keep it as a word of its own: the
# piece model's unknown token, so that it scores as the word models score it.
UNKNOWN_WORD = UNK


class SentencePieceTokenizer(Tokenizer):
    level = "sentencepiece"
    model_file_name = PIECE_MODEL_FILE
    loss_unit = "nats per piece, one <eos> per line counted"
    reports_word_perplexity = True

    def __init__(self, config: TokenizerConfig, directory: Path | None = None) -> None:
        super().__init__(config)
        if directory is None or not config.model_file:
            raise ValueError("a SentencePiece tokenizer needs its piece model file")
        path = Path(directory) / config.model_file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: SentencePiece model not found")
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(path))

    @property
    def pieces(self) -> list[str]:
        """Every piece in id order: the model's vocabulary."""
        return [self.processor.id_to_piece(index) for index in range(self.processor.get_piece_size())]

    def corpus_vocabulary(self) -> Vocabulary:
        return Vocabulary(self.pieces)  # the piece model's ids are the vocabulary's

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for index, line in enumerate(text.split("\n")):
            if index:
                tokens.append(EOS)
            for part_index, part in enumerate(line.split(UNKNOWN_WORD)):
                if part_index:
                    tokens.append(UNKNOWN_WORD)
                if part.strip():
                    tokens.extend(self.processor.encode(part, out_type=str))
        return tokens

    def detokenize(self, tokens: list[str]) -> str:
        return "\n".join(_line_text(line) for line in split_lines(tokens))

    def plain_boundary(self, left: str, right: str) -> bool:
        # A piece that starts a word starts with a space: nothing before it changes.
        return right.startswith(WORD_START)

    def surface(self, token: str) -> str:
        byte = _BYTE_PIECE.match(token)
        if byte:
            # One byte of a longer character has no text of its own.
            value = int(byte.group(1), 16)
            return chr(value) if value < 0x80 else ""
        return super().surface(token).lstrip(WORD_START)


def _line_text(pieces: list[str]) -> str:
    """Pieces -> text: the space marker is a space, byte pieces are UTF-8 bytes (a character cut
    off mid-way shows as U+FFFD until its last byte comes), the line's leading space dropped."""
    out = bytearray()
    for piece in pieces:
        byte = _BYTE_PIECE.match(piece)
        if byte:
            out.append(int(byte.group(1), 16))
        elif piece == UNKNOWN_WORD:
            out += f" {UNKNOWN_WORD}".encode()
        else:
            out += piece.replace(WORD_START, " ").encode()
    text = out.decode("utf-8", errors="replace")
    return text[1:] if text.startswith(" ") else text


def train_piece_model(lines, prefix: Path, vocab_size: int, model_type: str = "unigram") -> Path:
    """Train a piece model on an iterator of text lines; returns the .model path. The special
    tokens take the vocabulary's names and the first ids, in the vocabulary's order."""
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        byte_fallback=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=2,
        hard_vocab_limit=False,  # a small corpus may not have as many pieces as asked for
        minloglevel=2,
    )
    return Path(f"{prefix}.model")
