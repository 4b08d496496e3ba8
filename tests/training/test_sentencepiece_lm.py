"""A SentencePiece language model end to end: `train_lm --level sentencepiece` learns a piece
model and the network on text with names the word models would call unknown, exports both,
evaluates per piece and per word, and the service scores, generates and streams with it."""
from __future__ import annotations

import json
import math
import random

import pytest

from models.artifacts import CheckpointError
from models.checkpoint import load_language_model
from models.generation import CompletionTracker
from models.sampling import SamplingParams
from tests.conftest import tiny_sentences
from training import evaluate_lm
from training.train_lm import main as train

NAMES = ["Ødegaard", "Zanzibar", "Kowalczyk", "Nakamura", "Dvořák", "Oyelaran"]


@pytest.fixture(scope="module")
def named_corpus(tmp_path_factory):
    """The tiny grammar with people's names (some only in test) as subjects."""
    directory = tmp_path_factory.mktemp("named-corpus")
    for split, count, seed in (("train", 3000, 1), ("valid", 300, 2), ("test", 300, 3)):
        rng = random.Random(seed)
        names = NAMES if split == "test" else NAMES[:4]
        lines = [sentence.replace("the cat", rng.choice(names)) for sentence in tiny_sentences(count, seed)]
        (directory / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def pieces_model(tmp_path_factory, named_corpus):
    models_dir = tmp_path_factory.mktemp("piece-models")
    metrics = train([
        "--data", str(named_corpus), "--level", "sentencepiece", "--max-vocab", "320", "--embedding-dim", "32",
        "--hidden-dim", "48", "--num-layers", "1", "--dropout", "0", "--batch-size", "16", "--bptt", "20", "--lr", "1e-2",
        "--epochs", "2", "--tie-weights", "--run-dir", str(tmp_path_factory.mktemp("piece-run")),
        "--export-dir", str(models_dir / "tiny-pieces"), "--no-progress", "--seed", "7",
    ])
    return models_dir / "tiny-pieces", metrics


def test_export_ships_the_piece_model_and_its_vocabulary(pieces_model):
    path, metrics = pieces_model
    config = json.loads((path / "config.json").read_text())
    assert config["tokenizer"]["level"] == "sentencepiece"
    assert config["tokenizer"]["model_file"] == "tokenizer.model" and (path / "tokenizer.model").is_file()
    loaded = load_language_model(path)
    assert loaded.vocab.tokens == loaded.tokenizer.pieces  # ids are the piece model's
    assert loaded.vocab.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    # A trained model is far below uniform over its pieces.
    assert metrics["valid_ppl"] < len(loaded.vocab) / 10


def test_word_perplexity_spreads_the_same_likelihood_over_the_words(pieces_model, named_corpus):
    path, metrics = pieces_model
    pieces = evaluate_lm.main([str(path), "--data", str(named_corpus / "test.txt")])
    assert pieces["perplexity"] == pytest.approx(metrics["test_ppl"], rel=1e-3)
    words = sum(len(line.split()) + 1 for line in (named_corpus / "test.txt").read_text().splitlines())
    assert pieces["words"] == metrics["test_words"] == words
    assert pieces["tokens"] > words  # names are spelled with several pieces
    expected = math.exp(pieces["loss_nats_per_token"] * (pieces["tokens"] - 1) / (words - 1))
    assert pieces["word_perplexity"] == pytest.approx(expected, rel=1e-3)
    assert metrics["test_word_ppl"] == pytest.approx(pieces["word_perplexity"], rel=1e-3)


@pytest.mark.parametrize("text", [
    "Oyelaran walked past the house .",  # a name training never saw
    "Wöłfeschlegelstein sat near 東京 , really !",  # letters and a script the corpus lacks: bytes
    "the dog ran to <unk> .",  # a corpus's unknown-word marker stays one token
])
def test_any_text_round_trips_without_unknown_pieces(pieces_model, text):
    loaded = load_language_model(pieces_model[0])
    tokens = loaded.tokenizer.tokenize(text)
    assert loaded.tokenizer.detokenize(tokens) == text
    encoded = loaded.encode_text(text, add_start=True)
    assert not any(encoded.oov)
    assert (loaded.vocab.unk_id in encoded.ids) == ("<unk>" in text)


def test_offsets_place_every_piece_in_the_text(pieces_model):
    loaded = load_language_model(pieces_model[0])
    text = "Nakamura looked at a red car ."
    tokens = loaded.tokenizer.tokenize(text)
    offsets = loaded.tokenizer.offsets(text, tokens)
    assert offsets == sorted(offsets) and offsets[-1] == text.index(".")
    for token, offset in zip(tokens, offsets):
        assert text[offset:].startswith(loaded.tokenizer.surface(token))


def test_streamed_text_is_the_whole_text_and_costs_the_same_per_token(pieces_model):
    loaded = load_language_model(pieces_model[0])
    tokenizer, vocab = loaded.tokenizer, loaded.vocab
    rng = random.Random(5)
    ordinary = [t for t in vocab.tokens[4:] if not t.startswith("<")]
    work = {}
    for length in (300, 1200):
        read: list[int] = []
        original = tokenizer.detokenize
        tokenizer.detokenize = lambda tokens: read.append(len(tokens)) or original(tokens)
        try:
            context = tokenizer.tokenize("Ødegaard sat on")
            tracker = CompletionTracker(SamplingParams(max_tokens=5000), vocab, tokenizer, context=context)
            streamed, tokens = "", []
            for token in (rng.choice(ordinary) for _ in range(length)):
                delta = tracker.add(vocab.id(token))
                streamed += delta  # pieces never rewrite the text before them: deltas only append
                tokens.append(token)
        finally:
            del tokenizer.detokenize
        assert streamed == tracker.completion.text == tokenizer.detokenize_continuation(context, tokens)
        work[length] = sum(read) / length
    assert work[1200] < 1.3 * work[300], work


def test_a_missing_piece_model_is_a_clear_checkpoint_error(pieces_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(pieces_model[0], broken)
    (broken / "tokenizer.model").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_language_model(broken)


def test_the_service_lists_scores_and_generates_with_it(pieces_model):
    from tests.api.conftest import open_client
    from tests.api.test_serving import read_sse

    loaded_tokenizer = load_language_model(pieces_model[0]).tokenizer
    client = open_client(pieces_model[0].parent)
    try:
        listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert listed["tiny-pieces"]["level"] == "sentencepiece"
        text = "Oyelaran sat on the mat ."
        scored = client.post("/v1/score", json={"model": "tiny-pieces", "texts": [text]}).json()["results"][0]
        assert scored["num_unknown"] == 0 and scored["logprob"] < 0
        surfaces = [loaded_tokenizer.surface(t) for t in scored["tokens"]]
        assert all(text[o:].startswith(s) for s, o in zip(surfaces, scored["text_offset"]))
        body = {"model": "tiny-pieces", "prompt": "Kowalczyk", "max_tokens": 12, "strategy": "argmax"}
        whole = client.post("/v1/generate", json=body).json()["choices"][0]["text"]
        assert whole.strip()
        events = read_sse(client.post("/v1/generate", json=body | {"stream": True}))
        assert "".join(e["choices"][0]["text"] for e in events[:-2]) == whole
    finally:
        client.__exit__(None, None, None)


def test_in_int8_it_scores_and_generates_the_same_alone_or_batched(pieces_model):
    """A SentencePiece model served in int8 (models.quantization): a text's scores and a seeded
    generation are the same alone or among others, and close to fp32's."""
    from models.generation import generate
    from models.registry import load_model

    fp32, int8 = load_language_model(pieces_model[0]), load_model(pieces_model[0], "cpu", "int8")
    assert int8.precision == "int8" and int8.revision != fp32.revision
    texts = ["Oyelaran sat on the mat .", "Dvořák ran to the door .", "a bird looked at Zanzibar ."]
    encoded = [int8.encode_text(text, add_start=True, add_end=True).ids for text in texts]
    together = int8.score(encoded)
    for ids, result, reference in zip(encoded, together, fp32.score(encoded)):
        assert int8.score([ids])[0].token_logprobs == result.token_logprobs
        assert max(abs(a - b) for a, b in zip(result.token_logprobs, reference.token_logprobs)) < 0.5
    params = [SamplingParams(strategy="multinomial", seed=seed, max_tokens=10) for seed in range(3)]
    prompts = [ids[:3] for ids in encoded]
    batched = generate(int8.model, int8.vocab, int8.tokenizer, prompts, params)
    for prompt, p, completion in zip(prompts, params, batched):
        assert generate(int8.model, int8.vocab, int8.tokenizer, [prompt], [p])[0].token_ids == completion.token_ids
