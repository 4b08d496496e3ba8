"""The rescoring workflow's tools: n-best files read strictly, tuning that gives the same numbers
in process and through the service, and the espeak-ng + pocketsphinx n-best builder."""
import json
import shutil

import pytest

from tests.conftest import REPOSITORY_ROOT
from tests.e2e.conftest import start_server
from training.make_nbest import main as make_nbest
from training.make_nbest import spoken_words
from training.nbest_files import NBestFileError, read_nbest
from training.tune_rescoring import main as tune

SLICE = REPOSITORY_ROOT / "tests" / "data" / "nbest-ptb-dev-slice.jsonl"


@pytest.mark.parametrize("content, message", [
    ("", "no n-best lists"),
    ('{"id": "a", "hypotheses": [{"text": "x"}]}\n{not json\n', ":2: not JSON"),
    ('{"id": "a", "hypotheses": []}\n', ":1: 'hypotheses' must be a non-empty list"),
    ('{"id": "a", "hypotheses": [{"words": "x"}]}\n', "needs a 'text' string"),
    ('{"id": "a", "hypotheses": [{"text": "x", "acoustic_score": "high"}]}\n', "finite number"),
    ('{"id": "a", "hypotheses": [{"text": "x", "acoustic_score": -1}, {"text": "y"}]}\n', "for every hypothesis or for none"),
    ('{"id": "a", "hypotheses": [{"text": "x", "scores": {"ctc": "low"}}]}\n', "'scores' must map names to finite numbers"),
    ('{"id": "a", "hypotheses": [{"text": "x", "scores": [1]}]}\n', "'scores' must map names to finite numbers"),
    ('{"id": "a", "hypotheses": [{"text": "x", "scores": {"ctc": -1}}]}\n{"id": "b", "hypotheses": [{"text": "y"}]}\n',
     ":2: hypothesis 0: 'scores' names"),
])
def test_bad_nbest_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(NBestFileError, match=message):
        read_nbest(path)


def test_tuning_needs_references(tmp_path):
    path = tmp_path / "unlabelled.jsonl"
    path.write_text('{"id": "a", "hypotheses": [{"text": "x", "acoustic_score": -1}]}\n')
    with pytest.raises(NBestFileError, match=":1: tuning needs a 'reference'"):
        read_nbest(path, need_reference=True)


def test_the_slice_is_real_recogniser_output():
    lists = read_nbest(SLICE, need_reference=True)
    assert len(lists) == 20 and all(len(n.hypotheses) >= 2 for n in lists)
    assert all(h.acoustic_score < 0 for n in lists for h in n.hypotheses)


def test_tuning_in_process_and_through_the_service_agree(tmp_path):
    model = "wikitext2-lstm"
    local = tune(["--nbest", str(SLICE), "--model", model, "--eval", str(SLICE), "--output", str(tmp_path / "w.json")])
    dev = local["dev"]
    assert dev["oracle_wer"] <= dev["rescored_wer"] and dev["oracle_wer"] <= dev["first_pass_wer"]
    assert json.loads((tmp_path / "w.json").read_text())["weights"] == local["weights"]
    server = start_server(tmp_path, tmp_path / "no-models", RNNSERVE_SERVE_SHIPPED_MODELS="true")
    try:
        remote = tune(["--nbest", str(SLICE), "--model", model, "--eval", str(SLICE), "--url", server.base_url])
    finally:
        server.stop()
    assert remote["weights"] == local["weights"] and remote["dev"] == local["dev"] and remote["eval"] == local["eval"]


def test_spoken_words_are_what_a_recogniser_writes():
    assert spoken_words("The U.S. economy, he said, isn't \"booming\" -- yet.") == ["the", "u", "s", "economy", "he", "said", "isn't", "booming", "yet"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make test installs espeak-ng")
def test_the_builder_speaks_decodes_and_scores(tmp_path):
    corpus = tmp_path / "sentences.txt"
    corpus.write_text("the company said it expects higher profits next year\nthe board met on friday to discuss the plan\n")
    summary = make_nbest(["--data", str(corpus), "--style", "ptb", "--utterances", "2", "--nbest", "4", "--workers", "1",
                          "--output", str(tmp_path / "out.jsonl")])
    assert summary["utterances"] == 2
    lists = read_nbest(tmp_path / "out.jsonl", need_reference=True)
    assert {n.reference for n in lists} == {"the company said it expects higher profits next year", "the board met on friday to discuss the plan"}
    for nbest in lists:
        assert 1 <= len(nbest.hypotheses) <= 4 and len({h.text for h in nbest.hypotheses}) == len(nbest.hypotheses)
        assert all(h.acoustic_score < 0 for h in nbest.hypotheses)
        # The recogniser's own language model score and its order ride along as named scores.
        assert all(set(h.scores) == {"recogniser_lm", "first_pass_rank"} and h.scores["recogniser_lm"] < 0
                   for h in nbest.hypotheses)
        assert [h.scores["first_pass_rank"] for h in nbest.hypotheses] == [float(-i) for i in range(len(nbest.hypotheses))]


def test_a_per_token_mixture_as_one_language_model(tiny_corpus, tiny_model_path, tmp_path):
    from training.train_ngram import main as train_ngram

    ngram = tmp_path / "tiny-kn3-wikitext"
    train_ngram(["--data", str(tiny_corpus), "--order", "3", "--output", str(ngram)])
    alone = tune(["--nbest", str(SLICE), "--model", str(tiny_model_path)])
    all_on_first = tune(["--nbest", str(SLICE), "--model", str(tiny_model_path), "--model", str(ngram), "--mix", "1,0"])
    assert all_on_first["mix"] == [1.0, 0.0] and all_on_first["dev"] == alone["dev"]
    half = tune(["--nbest", str(SLICE), "--model", str(tiny_model_path), "--model", str(ngram), "--mix", "0.5,0.5"])
    assert list(half["weights"]["lm_weights"]) == ["linear"]
    with pytest.raises(Exception, match="sum to 1"):
        tune(["--nbest", str(SLICE), "--model", str(tiny_model_path), "--model", str(ngram), "--mix", "0.5,0.6"])


def test_named_scores_are_tuned_and_the_confidences_measured(tiny_model_path, tmp_path):
    """A named score that knows the answer (minus each hypothesis's word errors) gets a positive
    weight and brings the rescored WER to the oracle's; the report measures MBR and confidences."""
    import jiwer

    lines = []
    for line in SLICE.read_text().splitlines():
        record = json.loads(line)
        for hypothesis in record["hypotheses"]:
            errors = jiwer.process_words(record["reference"], hypothesis["text"])
            hypothesis["scores"] = {"knows": -100.0 * (errors.substitutions + errors.deletions + errors.insertions)}
        lines.append(json.dumps(record))
    named = tmp_path / "named.jsonl"
    named.write_text("\n".join(lines) + "\n")
    result = tune(["--nbest", str(named), "--model", str(tiny_model_path)])
    assert result["weights"]["score_weights"]["knows"] > 0
    dev = result["dev"]
    assert dev["rescored_wer"] == dev["oracle_wer"] < dev["first_pass_wer"]
    assert result["posterior_scale"] > 0 and result["scale_objective"] == "nce"
    assert dev["nce"] is None or dev["nce"] <= 1
    assert [f["threshold"] for f in dev["confidence_filtered"]] == [0.3, 0.5, 0.7, 0.9]
    assert all(0 <= f["words_kept"] <= 1 for f in dev["confidence_filtered"])
    # The eval file must carry the dev file's named scores.
    with pytest.raises(Exception, match="named scores"):
        tune(["--nbest", str(named), "--model", str(tiny_model_path), "--eval", str(SLICE)])
    mbr = tune(["--nbest", str(SLICE), "--model", str(tiny_model_path), "--scale-objective", "mbr"])
    assert mbr["scale_objective"] == "mbr" and 0 <= mbr["dev"]["mbr_wer"] <= 1


def test_tuning_puts_hypotheses_in_a_normalised_models_form(tiny_corpus, tiny_model_path, tmp_path):
    """A model trained on recogniser-form text (train_lm --text-normalization recogniser) scores
    an n-best file written with case, punctuation and digits as it scores the same file in the
    recogniser's form, as /v1/rescore does; --no-normalize scores the text as written."""
    from training.train_lm import main as train
    from training.tune_rescoring import score_in_process

    model = tmp_path / "tiny-recogniser-lm"
    train(["--data", str(tiny_corpus), "--level", "word", "--text-normalization", "recogniser", "--embedding-dim", "16",
           "--hidden-dim", "16", "--num-layers", "1", "--dropout", "0", "--batch-size", "16", "--bptt", "20", "--epochs", "1",
           "--run-dir", str(tmp_path / "run"), "--export-dir", str(model), "--no-progress", "--seed", "3"])
    assert json.loads((model / "config.json").read_text())["tokenizer"]["text_normalization"] == "recogniser"
    written = {"id": "a", "reference": "the cat sat on two mats", "context": "The dog ran.",
               "hypotheses": [{"text": "The cat sat on 2 mats.", "acoustic_score": -5.0},
                              {"text": "A cat sat!", "acoustic_score": -6.0}]}
    spoken = {**written, "context": "the dog ran", "hypotheses": [{"text": "the cat sat on two mats", "acoustic_score": -5.0},
                                                                 {"text": "a cat sat", "acoustic_score": -6.0}]}
    files = {}
    for name, record in (("written", written), ("spoken", spoken)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text(json.dumps(record) + "\n")
    scores = {name: score_in_process(read_nbest(path), [str(model)], "spell") for name, path in files.items()}
    assert scores["written"] == scores["spoken"]
    as_written = score_in_process(read_nbest(files["written"]), [str(model)], "spell", normalize=False)
    assert as_written != scores["spoken"]
    # The cased model reads the text as written: the two files differ for it.
    cased = {name: score_in_process(read_nbest(path), [str(tiny_model_path)], "spell") for name, path in files.items()}
    assert cased["written"] != cased["spoken"]
    with pytest.raises(Exception, match="different forms"):
        tune(["--nbest", str(files["spoken"]), "--model", str(model), "--model", str(tiny_model_path), "--mix", "0.5,0.5"])


def test_corpus_lines_in_the_recogniser_form():
    """What train_lm --text-normalization recogniser trains on: a WikiText-2 paragraph split into
    sentences with its joiners undone and its numbers spelled out, PTB's N and <unk> kept unknown,
    headings left out."""
    from models.tokenizers import make_tokenizer
    from training.corpus import lm_tokenizer_config
    from training.normalized_corpus import normalized_sentences

    model = make_tokenizer(lm_tokenizer_config("word", "wikitext"))
    wikitext = " In 1990 , the state @-@ of @-@ the @-@ art <unk> cost $ 5 @.@ 5 million . Mr. Smith didn 't agree . "
    assert normalized_sentences(wikitext, "wikitext", "recogniser", model) == [
        ["in", "nineteen", "ninety", "the", "state", "of", "the", "art", "<unk>", "cost", "five", "point", "five", "million",
         "dollars"],
        ["mister", "smith", "didn", "'t", "agree"]]
    assert normalized_sentences(" = Valkyria Chronicles = ", "wikitext", "recogniser", model) == []
    ptb = " the <unk> 's stake rose N cents "
    assert normalized_sentences(ptb, "ptb", "recogniser", model) == [["the", "<unk>", "'s", "stake", "rose", "<unk>", "cents"]]
