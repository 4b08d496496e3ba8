"""Build a speech-recognition n-best set offline: sentences of a corpus split spoken by a
speech synthesiser, decoded by `pocketsphinx` (its English acoustic model and dictionary, and
its own language model or an ARPA file given with --lm) into n-best lists, each hypothesis with
the recogniser's acoustic score alone (natural log, from aligning the hypothesis to the audio),
written as JSON lines for `training.tune_rescoring` and `/v1/rescore`:

    {"id", "reference", "hypotheses": [{"text", "acoustic_score", "scores": {"recogniser_lm",
     "first_pass_rank"}}, ...], "voice", "speed", "source"}

Each hypothesis also carries two named scores (`tune_rescoring` weighs them like any other), so
that rescoring keeps what the first pass knew and adds the new models to it: `recogniser_lm`,
the recogniser's own language model score (natural log of the hypothesis from <s> through </s>
under pocketsphinx's language model), as a recogniser reports its acoustic and language model
scores apart; and `first_pass_rank`, minus the hypothesis's place in the recogniser's list (0 for
its best). The search ranks by scores of its own passes, which the acoustic score from aligning
a hypothesis afterwards and `recogniser_lm` do not reproduce; the rank carries that order.

The synthesiser is Festival with the CMU ARCTIC "slt" HTS voice (`--tts festival`, the default:
a natural voice, so the recogniser makes the errors it makes on read speech), or `espeak-ng`
in four voices and two speeds (`--tts espeak-ng`). References and hypotheses are in the
recogniser's written form (`models.text_normalization`: lower case, no punctuation, "mister"
for "Mr."), as WER is scored. The first hypothesis is the recogniser's own best (acoustic model
and its language model). `speed` is words a minute for espeak-ng, Festival's duration stretch
for Festival.

    python -m training.make_nbest --data ../shared/data/ptb/ptb.test.txt --style ptb \\
        --utterances 100 --output runs/nbest/ptb-test.jsonl

Each utterance is appended to OUTPUT.partial as it is decoded; re-running the same command
skips the utterances already there (resumable), and OUTPUT appears when all are done.
Needs Festival with `festvox-us-slt-hts` (or `espeak-ng`) from Debian and `pocketsphinx` from
PyPI: `make nbest` installs them.
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

from models.text_normalization import recogniser_form
from models.tokenizers import TokenizerConfig, make_tokenizer, split_sentences
from training.cli import UsageError, parser_for, run_cli

logger = logging.getLogger("training.make_nbest")
ESPEAK_VOICES = ("en-us", "en-us+m3", "en-us+f3", "en-gb-x-rp")
ESPEAK_SPEEDS = (140, 165)
FESTIVAL_VOICES = ("cmu_us_slt_arctic_hts",)
# Festival's Duration_Stretch: 1 is the voice's own pace.
FESTIVAL_SPEEDS = (1.0,)
SAMPLE_RATE = 16_000
# pocketsphinx's log of zero; a word its language model lacks (one the written form changed) is
# charged as a rare word instead.
LOG_ZERO = -536870912
OUT_OF_VOCABULARY_LOGPROB = math.log(1e-8)
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


def speak(text: str, tts: str, voice: str, speed: float, directory: Path) -> bytes:
    """16 kHz, 16-bit mono samples of the synthesiser `tts` saying `text`."""
    path = directory / "speech.wav"
    if tts == "festival":
        setup = f"(begin (voice_{voice}) (Parameter.set 'Duration_Stretch {speed}))"
        subprocess.run(["text2wave", "-eval", setup, "-o", str(path)], input=text.encode("utf-8"), check=True,
                       capture_output=True)
    else:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return read_wave_16k(path)


def read_wave_16k(path: Path) -> bytes:
    """A 16-bit wave file's samples as 16 kHz mono, pocketsphinx's rate (channels averaged)."""
    with wave.open(str(path)) as audio:
        rate, channels = audio.getframerate(), audio.getnchannels()
        samples = np.frombuffer(audio.readframes(audio.getnframes()), dtype=np.int16)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate == SAMPLE_RATE or len(samples) == 0:
        return samples.tobytes()
    # Band-limited resampling in the frequency domain (espeak-ng speaks at 22,050 Hz, the
    # Festival voice at 32,000 Hz).
    length = int(round(len(samples) * SAMPLE_RATE / rate))
    resampled = np.fft.irfft(np.fft.rfft(samples.astype(np.float64))[: length // 2 + 1], length) * (length / len(samples))
    return np.clip(resampled, -32768, 32767).astype(np.int16).tobytes()


class Recogniser:
    """pocketsphinx: one decoder searching with its language model, one aligning a given word
    sequence to the audio for its acoustic score alone."""

    def __init__(self, language_model: str | None = None) -> None:
        from pocketsphinx import Config, Decoder, LogMath, NGramModel, get_model_path

        options = {"samprate": SAMPLE_RATE, **({"lm": language_model} if language_model else {})}
        self.search = Decoder(loglevel="FATAL", **options)
        self.align = Decoder(loglevel="FATAL", samprate=SAMPLE_RATE)
        self.logmath = LogMath()
        self.language_model = NGramModel(Config(), self.logmath, language_model or get_model_path("en-us/en-us.lm.bin"))
        self.order = self.language_model.size()

    def language_model_score(self, text: str) -> float:
        """Natural-log probability of `text` from <s> through </s> under the search's language
        model (a word it lacks costs OUT_OF_VOCABULARY_LOGPROB)."""
        history, total = ["<s>"], 0.0
        for word in [*text.split(), "</s>"]:
            # pocketsphinx takes the word first, then its history most recent first.
            value = self.language_model.prob([word, *reversed(history[-(self.order - 1):])])
            total += OUT_OF_VOCABULARY_LOGPROB if value <= LOG_ZERO else self.logmath.log_to_ln(value)
            history.append(word)
        return total

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


def recognise(job: tuple[str, str, str, str, float, int, str | None]) -> dict | None:
    """One utterance: speak, decode, score each hypothesis acoustically (runs in a worker).
    Hypotheses are written in the reference's form; two that read the same ("mr", "mister")
    keep the better-ranked one."""
    global _recogniser
    utterance_id, sentence, tts, voice, speed, size, language_model = job
    if _recogniser is None:
        _recogniser = Recogniser(language_model)
    with tempfile.TemporaryDirectory() as directory:
        audio = speak(sentence, tts, voice, speed, Path(directory))
    hypotheses, seen = [], set()
    for text in _recogniser.nbest(audio, size):
        written = recogniser_form(text)
        if not written or written in seen:
            continue
        score = _recogniser.acoustic_score(audio, text)
        if score is not None:
            seen.add(written)
            hypotheses.append({"text": written, "acoustic_score": round(score, 3),
                               "scores": {"recogniser_lm": round(_recogniser.language_model_score(written), 3),
                                          "first_pass_rank": float(-len(hypotheses))}})
    if not hypotheses:
        return None
    return {"id": utterance_id, "reference": recogniser_form(sentence), "hypotheses": hypotheses,
            "voice": voice, "speed": speed, "source": sentence}


FESTIVAL_VOICES_DIRECTORY = Path("/usr/share/festival/voices")  # Debian's: voices/LANGUAGE/VOICE


def check_tools(tts: str) -> None:
    if tts == "festival":
        if shutil.which("text2wave") is None or not any(FESTIVAL_VOICES_DIRECTORY.glob(f"*/{FESTIVAL_VOICES[0]}")):
            raise UsageError("Festival's slt voice is not installed (apt-get install festival festvox-us-slt-hts; "
                             "`make nbest` does it)")
    elif shutil.which("espeak-ng") is None:
        raise UsageError("espeak-ng is not installed (apt-get install espeak-ng; `make nbest` does it)")
    try:
        import pocketsphinx  # noqa: F401
    except ImportError as error:
        raise UsageError("pocketsphinx is not installed (pip install pocketsphinx; `make nbest` does it)") from error


def finished_ids(partial: Path) -> set[str]:
    """The utterances a previous run of the same command already wrote (a line cut short by an
    interruption is dropped from the file and done again)."""
    if not partial.exists():
        return set()
    done, complete = set(), []
    for line in partial.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        done.add(record["id"])
        complete.append(line)
    partial.write_text("".join(line + "\n" for line in complete), encoding="utf-8")
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="a tokenized corpus split (WikiText-2 or PTB file)")
    parser.add_argument("--style", choices=["wikitext", "ptb"], default="wikitext",
                        help="the corpus's conventions, undone to get the words read out")
    parser.add_argument("--utterances", type=int, default=200, help="sentences to speak and recognise")
    parser.add_argument("--tts", choices=["festival", "espeak-ng"], default="festival",
                        help="the synthesiser: Festival's natural slt voice, or espeak-ng's four robotic voices")
    parser.add_argument("--lm", default=None,
                        help="pocketsphinx's language model: an ARPA or binary file (default: the wheel's US English one)")
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
    check_tools(args.tts)
    sentences = corpus_sentences(args.data, args.style, args.min_words, args.max_words)
    if not sentences:
        raise UsageError(f"{args.data}: no sentences of {args.min_words}-{args.max_words} speakable words")
    rng = random.Random(args.seed)
    chosen = rng.sample(sentences, min(args.utterances, len(sentences)))
    stem = args.output.stem
    voices, speeds = (FESTIVAL_VOICES, FESTIVAL_SPEEDS) if args.tts == "festival" else (ESPEAK_VOICES, ESPEAK_SPEEDS)
    jobs = [(f"{stem}-{index:04d}", sentence, args.tts, voices[index % len(voices)],
             speeds[(index // len(voices)) % len(speeds)], args.nbest, args.lm)
            for index, sentence in enumerate(chosen)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".partial")
    done = finished_ids(temporary)
    written = len(done)
    remaining = [job for job in jobs if job[0] not in done]
    if done:
        logger.info("resuming: %d utterances already in %s, %d to go", len(done), temporary, len(remaining))
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool, open(temporary, "a", encoding="utf-8") as handle:
        for record in tqdm(pool.map(recognise, remaining, chunksize=1), total=len(remaining), desc="recognising",
                           file=sys.stderr):
            if record is not None:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                written += 1
    os.replace(temporary, args.output)
    summary = {"output": str(args.output), "utterances": written, "sentences_available": len(sentences)}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
