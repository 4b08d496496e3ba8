"""Build a speech-recognition n-best set offline: sentences of a corpus split spoken by
`espeak-ng` (several voices and speeds), decoded by `pocketsphinx` (its English acoustic model,
dictionary and language model, all in its wheel) into n-best lists, each hypothesis with the
recogniser's acoustic score alone (natural log, from aligning the hypothesis to the audio),
written as JSON lines for `training.tune_rescoring` and `/v1/rescore`:

    {"id", "reference", "hypotheses": [{"text", "acoustic_score"}, ...], "voice", "speed", "source"}

The first hypothesis is the recogniser's own best (acoustic model and its language model).

    python -m training.make_nbest --data ../shared/data/ptb/ptb.test.txt --style ptb \\
        --utterances 200 --output runs/nbest/ptb-test.jsonl

Needs `espeak-ng` (Debian) and `pocketsphinx` (PyPI): `make nbest` installs both.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.tokenizers import TokenizerConfig, make_tokenizer, split_sentences
from training.cli import UsageError, parser_for, run_cli

logger = logging.getLogger("training.make_nbest")
VOICES = ("en-us", "en-us+m3", "en-us+f3", "en-gb-x-rp")
SPEEDS = (140, 165)
SAMPLE_RATE = 16_000
_SPOKEN = re.compile(r"^[a-z]+(?:'[a-z]+)?$")


def spoken_words(text: str) -> list[str]:
    """A transcript as a recogniser writes it: lower case, punctuation dropped, apostrophes kept."""
    words = []
    for word in re.sub(r"[^\w' ]+", " ", text.lower().replace("-", " ")).split():
        word = word.strip("'")
        if word:
            words.append(word)
    return words


def corpus_sentences(path: Path, style: str, min_words: int, max_words: int) -> list[str]:
    """Sentences of a tokenized corpus file as a person would read them out (no numbers, no
    <unk>: a reference must say exactly what was spoken)."""
    tokenizer = make_tokenizer(TokenizerConfig(level="word", style=style))
    sentences: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        tokens = line.split()
        if not tokens or tokens[0] == "=":  # a WikiText heading
            continue
        text = tokenizer.detokenize(tokens)
        for sentence in split_sentences(text) if style != "ptb" else [text]:
            if "<unk>" in sentence or (style == "ptb" and "N" in sentence.split()):
                continue
            words = spoken_words(sentence)
            if min_words <= len(words) <= max_words and not re.search(r"\d", sentence) and all(_SPOKEN.match(w) for w in words):
                sentences.append(sentence)
    return sentences


def speak(text: str, voice: str, speed: int, directory: Path) -> bytes:
    """16 kHz, 16-bit mono samples of espeak-ng saying `text`."""
    path = directory / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as audio:
        rate, samples = audio.getframerate(), np.frombuffer(audio.readframes(audio.getnframes()), dtype=np.int16)
    if rate == SAMPLE_RATE:
        return samples.tobytes()
    # Band-limited resampling in the frequency domain (espeak-ng speaks at 22,050 Hz).
    length = int(round(len(samples) * SAMPLE_RATE / rate))
    resampled = np.fft.irfft(np.fft.rfft(samples.astype(np.float64))[: length // 2 + 1], length) * (length / len(samples))
    return np.clip(resampled, -32768, 32767).astype(np.int16).tobytes()


class Recogniser:
    """pocketsphinx: one decoder searching with its language model, one aligning a given word
    sequence to the audio for its acoustic score alone."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.search = Decoder(loglevel="FATAL")
        self.align = Decoder(loglevel="FATAL")

    def nbest(self, audio: bytes, size: int) -> list[str]:
        self.search.start_utt()
        self.search.process_raw(audio, full_utt=True)
        self.search.end_utt()
        hypotheses: list[str] = []
        best = self.search.hyp()
        if best is not None and best.hypstr.strip():
            hypotheses.append(best.hypstr)
        for index, hypothesis in enumerate(self.search.nbest()):
            if len(hypotheses) >= size or index >= 50 * size:
                break
            text = " ".join(hypothesis.hypstr.split())
            if text and text not in hypotheses:
                hypotheses.append(text)
        return hypotheses

    def acoustic_score(self, audio: bytes, text: str) -> float | None:
        """Natural-log acoustic score of `text` aligned to the audio (None if it cannot align)."""
        try:
            self.align.set_align_text(text)
            self.align.start_utt()
            self.align.process_raw(audio, full_utt=True)
            self.align.end_utt()
        except RuntimeError:
            return None
        if self.align.hyp() is None:
            return None
        # pocketsphinx reports each segment's acoustic score as a probability.
        scores = [segment.ascore for segment in self.align.seg()]
        if not scores or min(scores) <= 0.0:
            return None
        return sum(math.log(score) for score in scores)


_recogniser: Recogniser | None = None


def recognise(job: tuple[str, str, str, int, int]) -> dict | None:
    """One utterance: speak, decode, score each hypothesis acoustically (runs in a worker)."""
    global _recogniser
    utterance_id, sentence, voice, speed, size = job
    if _recogniser is None:
        _recogniser = Recogniser()
    with tempfile.TemporaryDirectory() as directory:
        audio = speak(sentence, voice, speed, Path(directory))
    hypotheses = []
    for text in _recogniser.nbest(audio, size):
        score = _recogniser.acoustic_score(audio, text)
        if score is not None:
            hypotheses.append({"text": text, "acoustic_score": round(score, 3)})
    if not hypotheses:
        return None
    return {"id": utterance_id, "reference": " ".join(spoken_words(sentence)), "hypotheses": hypotheses,
            "voice": voice, "speed": speed, "source": sentence}


def check_tools() -> None:
    if shutil.which("espeak-ng") is None:
        raise UsageError("espeak-ng is not installed (apt-get install espeak-ng; `make nbest` does it)")
    try:
        import pocketsphinx  # noqa: F401
    except ImportError as error:
        raise UsageError("pocketsphinx is not installed (pip install pocketsphinx; `make nbest` does it)") from error


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="a tokenized corpus split (WikiText-2 or PTB file)")
    parser.add_argument("--style", choices=["wikitext", "ptb"], default="wikitext",
                        help="the corpus's conventions, undone to get the words read out")
    parser.add_argument("--utterances", type=int, default=200, help="sentences to speak and recognise")
    parser.add_argument("--nbest", type=int, default=10, help="hypotheses per utterance at most")
    parser.add_argument("--min-words", type=int, default=5, help="shortest sentence taken, in words")
    parser.add_argument("--max-words", type=int, default=14, help="longest sentence taken, in words")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the sentences drawn")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="utterances recognised in parallel (default: every core)")
    parser.add_argument("--output", type=Path, required=True, help="JSON lines file to write")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_tools()
    sentences = corpus_sentences(args.data, args.style, args.min_words, args.max_words)
    if not sentences:
        raise UsageError(f"{args.data}: no sentences of {args.min_words}-{args.max_words} speakable words")
    rng = random.Random(args.seed)
    chosen = rng.sample(sentences, min(args.utterances, len(sentences)))
    stem = args.output.stem
    jobs = [(f"{stem}-{index:04d}", sentence, VOICES[index % len(VOICES)], SPEEDS[(index // len(VOICES)) % len(SPEEDS)], args.nbest)
            for index, sentence in enumerate(chosen)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    temporary = args.output.with_suffix(".partial")
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool, open(temporary, "w", encoding="utf-8") as handle:
        for record in tqdm(pool.map(recognise, jobs, chunksize=4), total=len(jobs), desc="recognising", file=sys.stderr):
            if record is not None:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    os.replace(temporary, args.output)
    summary = {"output": str(args.output), "utterances": written, "sentences_available": len(sentences)}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
